// The one Catch2 include of the tests, for both Catch2 2 (Debian 12: a single header) and Catch2 3
// (Debian 13: a compiled library with headers per part). The tests use the Catch2 2 spellings;
// under Catch2 3 the few that moved are brought back here: Approx (now Catch::Approx) and
// Catch::Contains (now Catch::Matchers::ContainsSubstring).
//
// Thread-safety: as Catch2's (assertions from the test's own thread only).
#pragma once

#if __has_include(<catch2/catch_all.hpp>)
#include <catch2/catch_all.hpp>

#include <string>

using Catch::Approx;
namespace Catch {
inline Matchers::StringContainsMatcher Contains(const std::string& s,
                                                CaseSensitive cs = CaseSensitive::Yes) {
  return Matchers::ContainsSubstring(s, cs);
}
}  // namespace Catch
#else
#include <catch2/catch.hpp>
#endif
