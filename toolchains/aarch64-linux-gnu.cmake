# CMake toolchain file: cross-compile for 64-bit ARM (Debian arm64) with Debian multiarch.
#   cmake -S . -B build-arm64 -G Ninja --toolchain toolchains/aarch64-linux-gnu.cmake
# Needs `toolchains/setup.sh --arm64`: crossbuild-essential-arm64 (the compilers), pkgconf:arm64
# (the aarch64-linux-gnu-pkg-config wrapper), the :arm64 -dev package of every library, and
# qemu-user-static. There is no sysroot: the target's headers and libraries live in the host's /usr
# (/usr/include, /usr/lib/aarch64-linux-gnu), which CMAKE_LIBRARY_ARCHITECTURE selects. Programs
# found at configure time (flatc) are the host's. Tests run under qemu-aarch64-static through
# CMAKE_CROSSCOMPILING_EMULATOR (ctest prefixes every test command with it).
set(GW_CROSS_TRIPLET aarch64-linux-gnu)
set(GW_CROSS_QEMU qemu-aarch64-static)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
include(${CMAKE_CURRENT_LIST_DIR}/multiarch-cross.cmake)
