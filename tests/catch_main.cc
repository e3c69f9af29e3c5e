// The Catch2 main shared by every test binary. Compiled here rather than taken from Debian's
// Catch2 package: Catch2 2 (Debian 12) ships its prebuilt main for the build architecture only
// (cross builds); with Catch2 3 (Debian 13) the session is the library's and main is this.
#if __has_include(<catch2/catch_session.hpp>)
#include <catch2/catch_session.hpp>

int main(int argc, char* argv[]) { return Catch::Session().run(argc, argv); }
#else
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
#endif
