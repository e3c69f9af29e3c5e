// make_local_store (ingest/store.h): the ring and the dead-letter store of this process.
#include "ingest/store.h"

namespace gw::ingest {
namespace {

class LocalStore final : public EventStore {
 public:
  LocalStore(buffer::Ring& ring, DeadLetters* dead_letters) : ring_(ring), dead_letters_(dead_letters) {}

  std::expected<buffer::Seq, std::error_code> store(const buffer::RecordIn& record, std::stop_token stop) override {
    auto seqs = ring_.append(std::span(&record, 1), std::move(stop));
    if (!seqs) return std::unexpected(seqs.error());
    return seqs->front();
  }

  std::expected<std::vector<buffer::Seq>, std::error_code> store_batch(std::span<const buffer::RecordIn> records,
                                                                       std::stop_token stop) override {
    return ring_.append(records, std::move(stop));
  }

  std::expected<void, std::error_code> reject(std::string_view topic, errc reason, std::span<const std::uint8_t> payload,
                                              std::int64_t received_ms, std::string_view detail) override {
    if (dead_letters_ == nullptr) return {};
    return dead_letters_->add(topic, reason, payload, received_ms, detail);
  }

 private:
  buffer::Ring& ring_;
  DeadLetters* const dead_letters_;
};

}  // namespace

std::unique_ptr<EventStore> make_local_store(buffer::Ring& ring, DeadLetters* dead_letters) {
  return std::make_unique<LocalStore>(ring, dead_letters);
}

}  // namespace gw::ingest
