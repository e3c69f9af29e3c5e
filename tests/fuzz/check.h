// What the fuzz targets share: an invariant check that aborts, so libFuzzer saves the input.
//
// Thread-safety: none needed (libFuzzer calls a target from one thread).
#pragma once

#include <cstdio>
#include <cstdlib>

namespace gw::fuzz {

// Aborts with `what` when `ok` is false: a broken invariant is a crash to libFuzzer.
inline void require(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "fuzz: invariant broken: %s\n", what);
  std::abort();
}

}  // namespace gw::fuzz
