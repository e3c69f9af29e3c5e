# CMake toolchain file: cross-compile for 32-bit ARM hard-float (Debian armhf, ARMv7) with Debian
# multiarch.
#   cmake -S . -B build-armhf -G Ninja --toolchain toolchains/arm-linux-gnueabihf.cmake
# Needs `toolchains/setup.sh --armhf` (crossbuild-essential-armhf, pkgconf:armhf, the :armhf -dev
# packages, qemu-user-static); see aarch64-linux-gnu.cmake for how the pieces fit, and the README
# ("ARM") for the state of Debian's armhf packages on the mirror.
set(GW_CROSS_TRIPLET arm-linux-gnueabihf)
set(GW_CROSS_QEMU qemu-arm-static)
set(CMAKE_SYSTEM_PROCESSOR arm)
include(${CMAKE_CURRENT_LIST_DIR}/multiarch-cross.cmake)
