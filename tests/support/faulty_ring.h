// A test Ring whose append() and commit() fail on demand (errc::map_full) and delegates everything
// else to a real Ring. Thread-safe like the ring it wraps.
#pragma once

#include <atomic>
#include <cstdint>

#include "buffer/ring.h"

namespace gw::test {

// A Ring whose append() fails while `failures` is non-zero (negative = forever), and whose commit()
// fails when it has more than `max_commit_writes` table writes (a consumer commit too large for
// what is left of a store); the rest is delegated to a real ring.
class FaultyRing final : public gw::buffer::Ring {
 public:
  explicit FaultyRing(gw::buffer::Ring& real) : real_(real) {}
  std::atomic<int> failures{0};
  std::atomic<int> failed{0};
  std::atomic<std::size_t> max_commit_writes{SIZE_MAX};
  std::atomic<int> commits_refused{0};

  std::expected<std::vector<gw::buffer::Seq>, std::error_code> append(std::span<const gw::buffer::RecordIn> records) override {
    int f = failures.load();
    if (f != 0) {
      if (f > 0) failures.fetch_sub(1);
      failed.fetch_add(1);
      return std::unexpected(make_error_code(gw::buffer::errc::map_full));
    }
    return real_.append(records);
  }
  std::expected<void, std::error_code> register_cursor(std::string_view name) override {
    return real_.register_cursor(name);
  }
  std::expected<gw::buffer::Seq, std::error_code> acked(std::string_view name) const override { return real_.acked(name); }
  std::expected<void, std::error_code> ack(std::string_view name, gw::buffer::Seq upto) override {
    return real_.ack(name, upto);
  }
  std::expected<std::vector<gw::buffer::StoredRecord>, std::error_code> read(gw::buffer::Seq after, std::size_t max_records,
                                                                         std::size_t max_bytes) const override {
    return real_.read(after, max_records, max_bytes);
  }
  bool wait_for(gw::buffer::Seq after, std::chrono::milliseconds timeout) const override {
    return real_.wait_for(after, timeout);
  }
  std::expected<std::uint64_t, std::error_code> trim() override { return real_.trim(); }
  std::expected<std::vector<gw::buffer::Seq>, std::error_code> commit(const gw::buffer::ConsumerCommit& c) override {
    if (c.writes.size() > max_commit_writes.load()) {
      commits_refused.fetch_add(1);
      return std::unexpected(make_error_code(gw::buffer::errc::map_full));
    }
    return real_.commit(c);
  }
  std::expected<std::optional<std::vector<std::uint8_t>>, std::error_code> table_get(
      std::string_view table, std::span<const std::uint8_t> key) const override {
    return real_.table_get(table, key);
  }
  std::expected<std::vector<gw::buffer::TableEntry>, std::error_code> table_scan(
      std::string_view table, std::span<const std::uint8_t> from, std::size_t max) const override {
    return real_.table_scan(table, from, max);
  }
  gw::buffer::Seq last_seq() const override { return real_.last_seq(); }
  gw::buffer::Stats stats() const override { return real_.stats(); }

 private:
  gw::buffer::Ring& real_;
};

}  // namespace gw::test
