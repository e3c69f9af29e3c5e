// bench-ingest's in-process decode figures (ingest/bench_decode.cc).
#pragma once

namespace gw::ingest {

// Prints BENCH decode_<format> lines (messages/s through admit()) for native JSON and every JSON
// preset, and RATIO lines of each preset's cost per message against native JSON; best of `rounds`.
// Returns 0, or 1 if a preset is missing.
int bench_decode(double seconds_per_case, int rounds);

}  // namespace gw::ingest
