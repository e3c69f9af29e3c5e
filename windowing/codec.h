// Deterministic little-endian binary encoding for the windowing state and results
// (windowing/FORMAT.md): fixed-width integers, doubles as their IEEE-754 bits (so a value survives
// a round trip bit for bit), strings and byte strings with a u32 length. The same input always
// gives the same bytes, which is what makes a restored stage byte-identical to an uninterrupted one.
//
// Thread-safety: plain values; one owner each.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace gw::windowing {

class Writer {
 public:
  void u8(std::uint8_t v) { out_.push_back(v); }
  void u32(std::uint32_t v) { put(v, 4); }
  void u64(std::uint64_t v) { put(v, 8); }
  void i64(std::int64_t v) { put(static_cast<std::uint64_t>(v), 8); }
  void f64(double v) { put(std::bit_cast<std::uint64_t>(v), 8); }
  void str(std::string_view s) {
    u32(static_cast<std::uint32_t>(s.size()));
    out_.insert(out_.end(), s.begin(), s.end());
  }
  // Big-endian: keys whose bytewise order is the numeric order.
  void be64(std::uint64_t v) {
    for (int i = 7; i >= 0; --i) out_.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
  }
  void raw(std::span<const std::uint8_t> b) { out_.insert(out_.end(), b.begin(), b.end()); }
  std::vector<std::uint8_t>& bytes() { return out_; }
  std::vector<std::uint8_t> take() { return std::move(out_); }

 private:
  void put(std::uint64_t v, int n) {
    for (int i = 0; i < n; ++i) out_.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
  }
  std::vector<std::uint8_t> out_;
};

// Reads what Writer wrote. Never trusts the input: reading past the end sets ok() to false and
// returns zeros, so a caller checks ok() once at the end.
class Reader {
 public:
  explicit Reader(std::span<const std::uint8_t> in) : in_(in) {}
  std::uint8_t u8() { return static_cast<std::uint8_t>(get(1)); }
  std::uint32_t u32() { return static_cast<std::uint32_t>(get(4)); }
  std::uint64_t u64() { return get(8); }
  std::int64_t i64() { return static_cast<std::int64_t>(get(8)); }
  double f64() { return std::bit_cast<double>(get(8)); }
  std::string str() {
    const std::uint32_t n = u32();
    if (!ok_ || n > in_.size() - pos_) {
      ok_ = false;
      return {};
    }
    std::string s(reinterpret_cast<const char*>(in_.data() + pos_), n);
    pos_ += n;
    return s;
  }
  std::uint64_t be64() {
    if (in_.size() - pos_ < 8) {
      ok_ = false;
      return 0;
    }
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = (v << 8) | in_[pos_ + i];
    pos_ += 8;
    return v;
  }
  bool ok() const { return ok_; }
  bool done() const { return ok_ && pos_ == in_.size(); }
  // Marks the input bad (a value out of its allowed range).
  void fail() { ok_ = false; }

 private:
  std::uint64_t get(int n) {
    if (!ok_ || in_.size() - pos_ < static_cast<std::size_t>(n)) {
      ok_ = false;
      return 0;
    }
    std::uint64_t v = 0;
    for (int i = 0; i < n; ++i) v |= static_cast<std::uint64_t>(in_[pos_ + i]) << (8 * i);
    pos_ += n;
    return v;
  }
  std::span<const std::uint8_t> in_;
  std::size_t pos_ = 0;
  bool ok_ = true;
};

// LMDB keys are at most 511 bytes: a longer key becomes its first 480 bytes, 0xFF and the
// big-endian FNV-1a 64 hash of the whole key (the values carry the full names).
inline std::vector<std::uint8_t> limit_key(std::vector<std::uint8_t> key) {
  if (key.size() <= 511) return key;
  std::uint64_t h = 14695981039346656037ull;
  for (std::uint8_t b : key) h = (h ^ b) * 1099511628211ull;
  key.resize(480);
  Writer w;
  w.u8(0xFF);
  w.be64(h);
  key.insert(key.end(), w.bytes().begin(), w.bytes().end());
  return key;
}

}  // namespace gw::windowing
