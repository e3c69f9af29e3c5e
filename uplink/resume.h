// Where a sink resumes after reading back what the broker already holds from this gateway beyond
// the sink's cursor (the Kafka sink's read_tail, the Pulsar sink's read_pulsar_tail): the records
// held without a gap after the cursor are acknowledged without being sent again, batches held
// beyond a gap (one failed while a later one was delivered) are not sent again either, and what is
// missing is sent. Shared by both sinks, so that they resume by one rule.
//
// Thread-safety: plain functions of their arguments (the ring is read).
#pragma once

#include <deque>
#include <optional>
#include <string_view>
#include <vector>

#include "buffer/ring.h"

namespace gw::uplink {

// The sequence range of one batch the broker holds (its gw-first-seq and gw-last-seq).
struct HeldRange {
  buffer::Seq first, last;
  bool operator==(const HeldRange&) const = default;
};

struct ResumePlan {
  std::optional<buffer::Seq> newest;  // the newest seq the broker holds from this gateway, if any
  // The broker holds more from this gateway id than the buffer ever stored (another gateway with the
  // same id, or a replaced buffer): nothing is skipped, since skipping would lose new records.
  bool foreign = false;
  buffer::Seq upto;                   // acknowledge the cursor up to here (held without a gap)
  std::deque<HeldRange> held_ahead;   // held beyond a gap, merged, in order: not sent again
};

// The plan for a cursor at `acked` and the ranges read back (any order).
ResumePlan plan_resume(buffer::Ring& ring, buffer::Seq acked, std::vector<HeldRange> held);

// Logs what a plan means beyond the acknowledgement: a foreign newest seq (an error: nothing is
// skipped) and each range held beyond a gap (a warning: what is missing is sent, not that). `log_name`
// is the sink's cursor, `where` the topic (and partition) read back.
void log_resume_plan(const ResumePlan& plan, std::string_view log_name, std::string_view where,
                     std::string_view gateway_id, buffer::Seq buffer_last);

// Whether a batch starting at `first` follows seq `end` without a gap: right after it, or with only
// records between that are gone from the buffer (trimmed or evicted). A read error counts as a gap:
// resending costs a duplicate at worst, assuming costs a loss.
bool adjoins(buffer::Ring& ring, buffer::Seq end, buffer::Seq first);

}  // namespace gw::uplink
