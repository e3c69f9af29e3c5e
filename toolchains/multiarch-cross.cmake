# Shared body of the Debian multiarch toolchain files (aarch64-linux-gnu.cmake,
# arm-linux-gnueabihf.cmake), which set GW_CROSS_TRIPLET, GW_CROSS_QEMU and CMAKE_SYSTEM_PROCESSOR
# and include this file. Not a toolchain file by itself.
set(CMAKE_SYSTEM_NAME Linux)

set(CMAKE_C_COMPILER ${GW_CROSS_TRIPLET}-gcc)
set(CMAKE_CXX_COMPILER ${GW_CROSS_TRIPLET}-g++)

# Multiarch instead of a sysroot: libraries and CMake package configs are found under
# /usr/lib/<triplet>; the arch-independent parts (headers, header-only packages' configs) under /usr.
set(CMAKE_LIBRARY_ARCHITECTURE ${GW_CROSS_TRIPLET})
# Only the target's library directory, never the build machine's /usr/lib/x86_64-linux-gnu.
set(CMAKE_IGNORE_PATH /usr/lib/x86_64-linux-gnu /lib/x86_64-linux-gnu)

# The wrapper installed by pkgconf:<arch>: it reads only the target's .pc files.
find_program(PKG_CONFIG_EXECUTABLE NAMES ${GW_CROSS_TRIPLET}-pkg-config)
if(NOT PKG_CONFIG_EXECUTABLE)
  message(FATAL_ERROR "${GW_CROSS_TRIPLET}-pkg-config not found: run toolchains/setup.sh for this architecture")
endif()

# ctest runs every test (and catch_discover_tests lists them) through the emulator. The Debian
# multiarch loader (/lib/ld-linux-*.so) and libraries are where qemu looks, so no -L is needed.
find_program(GW_QEMU NAMES ${GW_CROSS_QEMU})
if(GW_QEMU)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${GW_QEMU})
else()
  message(WARNING "${GW_CROSS_QEMU} not found: the tests cannot run (install qemu-user-static)")
endif()

# Programs (flatc, the cross pkg-config) are the build machine's.
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
