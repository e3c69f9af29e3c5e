// Where the MQTT source puts what it accepted and what it rejected: in the gateway process, the
// ring buffer and the dead-letter store (make_local_store); in an ingest worker process, the
// gateway's buffer writer over local IPC (ingest/ipc.h). Either way a call returns only once the
// record (or the dead letter) is durable, because the MQTT acknowledgement follows the return.
//
// Thread-safety: implementations may be called from any thread, concurrently.
#pragma once

#include <cstdint>
#include <expected>
#include <memory>
#include <span>
#include <stop_token>
#include <string_view>
#include <system_error>
#include <vector>

#include "buffer/ring.h"
#include "ingest/dead_letters.h"
#include "ingest/event.h"

namespace gw::ingest {

class EventStore {
 public:
  virtual ~EventStore() = default;
  // Stores one record at the buffer's durability; returns its sequence, or Seq{0} when the buffer
  // dropped it as a duplicate (RecordIn::dedup). Waits for room like Ring::append; a request on
  // `stop` ends that wait with buffer::errc::stopped (the record may or may not be stored then).
  [[nodiscard]] virtual std::expected<buffer::Seq, std::error_code> store(const buffer::RecordIn& record,
                                                                          std::stop_token stop) = 0;
  // Stores several records in one transaction (one sync) when the implementation can: a sequence
  // per record, Seq{0} for a dropped duplicate. On an error none, some or all may be stored (the
  // caller acknowledges none of them; a retry is deduplicated). The default stores one by one.
  [[nodiscard]] virtual std::expected<std::vector<buffer::Seq>, std::error_code> store_batch(
      std::span<const buffer::RecordIn> records, std::stop_token stop) {
    std::vector<buffer::Seq> out;
    for (const auto& r : records) {
      auto seq = store(r, stop);
      if (!seq) return std::unexpected(seq.error());
      out.push_back(*seq);
    }
    return out;
  }
  // Keeps a rejected message in the dead-letter store (durably). Fails if it cannot.
  [[nodiscard]] virtual std::expected<void, std::error_code> reject(std::string_view topic, errc reason,
                                                                    std::span<const std::uint8_t> payload,
                                                                    std::int64_t received_ms,
                                                                    std::string_view detail = {}) = 0;
};

// The store of the gateway process itself. Both must outlive it; dead_letters may be null (then
// rejected messages are only counted by the caller).
std::unique_ptr<EventStore> make_local_store(buffer::Ring& ring, DeadLetters* dead_letters);

}  // namespace gw::ingest
