// The Catch2 main shared by every test binary. Compiled here rather than taken from Debian's
// Catch2 package, whose prebuilt main exists for the build architecture only (cross builds).
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
