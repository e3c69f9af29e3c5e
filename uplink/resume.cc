#include "uplink/resume.h"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace gw::uplink {

bool adjoins(buffer::Ring& ring, buffer::Seq end, buffer::Seq first) {
  if (first.value <= end.value + 1) return true;
  auto r = ring.read(end, 1, 1);  // is a record still stored after `end` and before `first`?
  return r && (r->empty() || r->front().seq >= first);
}

ResumePlan plan_resume(buffer::Ring& ring, buffer::Seq acked, std::vector<HeldRange> held) {
  ResumePlan plan;
  plan.upto = acked;
  for (const HeldRange& r : held) plan.newest = std::max(plan.newest.value_or(r.last), r.last);
  if (!plan.newest) return plan;
  if (*plan.newest > ring.last_seq()) {
    plan.foreign = true;
    return plan;
  }
  std::sort(held.begin(), held.end(), [](const HeldRange& a, const HeldRange& b) { return a.first < b.first; });
  for (const HeldRange& r : held) {
    if (r.last <= plan.upto) continue;
    if (plan.held_ahead.empty() && adjoins(ring, plan.upto, r.first)) {
      plan.upto = r.last;
    } else if (!plan.held_ahead.empty() && adjoins(ring, plan.held_ahead.back().last, r.first)) {
      plan.held_ahead.back().last = std::max(plan.held_ahead.back().last, r.last);
    } else {
      plan.held_ahead.push_back(r);
    }
  }
  return plan;
}

void log_resume_plan(const ResumePlan& plan, std::string_view log_name, std::string_view where,
                     std::string_view gateway_id, buffer::Seq buffer_last) {
  if (plan.foreign) {
    spdlog::error("{}: {} holds seq {} from gateway {} but the buffer ends at seq {} (duplicate gateway_id or "
                  "replaced buffer?); not skipping", log_name, where, plan.newest->value, gateway_id, buffer_last.value);
  }
  for (const HeldRange& r : plan.held_ahead) {
    spdlog::warn("{}: {} holds seq {}..{} but not all before it (a batch failed while a later one was stored); "
                 "resending what is missing, not that", log_name, where, r.first.value, r.last.value);
  }
}

}  // namespace gw::uplink
