# Debian packages with CPack, included by the top CMakeLists.txt:
#   cmake --build BUILD && (cd BUILD && cpack -G DEB)  -> edge-gateway_<version>-1~deb<N>_<arch>.deb
# The same for a cross build (build-arm64: edge-gateway_0.1.0-1~deb12_arm64.deb); every release and
# architecture at once: toolchains/packages.sh. One package holds
# edge-gateway, its tools (firmware-sim, uplink-cat, kafka-mock) in /usr/bin, the systemd unit, the
# default config /etc/edge-gateway/edge-gateway.toml and the mosquitto drop-in
# /etc/mosquitto/conf.d/edge-gateway.conf (both conffiles); postinst creates the system user
# edge-gateway and /var/lib/edge-gateway, postrm removes them on purge (toolchains/debian/).
# The system files are installed at absolute paths, so `cmake --install` (as root) installs them
# too, as a package would.
set(_gw_deb ${CMAKE_CURRENT_LIST_DIR}/debian)

# The Debian release the package is for: the build system's (a cross build runs on a system of the
# target's release: toolchains/packages.sh). It names the package's version, 0.1.0-1~deb12 or
# 0.1.0-1~deb13 (a bookworm package upgrades to the trixie one with the release), and where the
# systemd files go: Debian 13 has merged /usr and ships units in /usr/lib/systemd, Debian 12 in
# /lib/systemd. GW_DEB_RELEASE overrides it (a number: 12, 13).
set(GW_DEB_RELEASE "" CACHE STRING "Debian release the package is built for (default: this system's VERSION_ID)")
set(_gw_release ${GW_DEB_RELEASE})
if(NOT _gw_release AND EXISTS /etc/os-release)
  file(STRINGS /etc/os-release _gw_version_id REGEX "^VERSION_ID=")
  string(REGEX REPLACE "^VERSION_ID=\"?([0-9]+).*" "\\1" _gw_release "${_gw_version_id}")
endif()
set(_gw_systemd /lib/systemd/system)
if(_gw_release AND _gw_release GREATER_EQUAL 13)
  set(_gw_systemd /usr/lib/systemd/system)
endif()

install(FILES ${_gw_deb}/edge-gateway.service DESTINATION ${_gw_systemd})
install(FILES ${_gw_deb}/edge-gateway.toml DESTINATION /etc/edge-gateway)
install(FILES ${_gw_deb}/mosquitto-edge-gateway.conf DESTINATION /etc/mosquitto/conf.d
        RENAME edge-gateway.conf)
# mosquitto starts after the gateway (ingest mode plugin: its plugin connects to the gateway's socket).
install(FILES ${_gw_deb}/mosquitto-after-edge-gateway.conf DESTINATION ${_gw_systemd}/mosquitto.service.d
        RENAME edge-gateway.conf)
install(FILES ${PROJECT_SOURCE_DIR}/README.md ${PROJECT_SOURCE_DIR}/gateway/edge-gateway.example.toml
        DESTINATION share/doc/edge-gateway)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME edge-gateway)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
if(_gw_release)
  set(CPACK_DEBIAN_PACKAGE_RELEASE "1~deb${_gw_release}")
endif()
set(CPACK_PACKAGE_VENDOR "edge-gateway")
set(CPACK_PACKAGE_CONTACT "edge-gateway maintainers <edge-gateway@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "edge IoT telemetry gateway: MQTT -> LMDB ring buffer -> windowing -> zstd batches -> Kafka")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)     # CMAKE_STRIP: the cross strip in a cross build
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# mosquitto: ingest mode plugin (the default config) runs the gateway's plugin in it.
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser, mosquitto (>= 2.0)")
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)   # library dependencies from dpkg-shlibdeps
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${_gw_deb}/conffiles ${_gw_deb}/postinst ${_gw_deb}/prerm ${_gw_deb}/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

# CPack asks dpkg for the architecture, which is the build machine's: name the target's instead.
if(CMAKE_CROSSCOMPILING)
  if(CMAKE_SYSTEM_PROCESSOR STREQUAL "aarch64")
    set(CPACK_DEBIAN_PACKAGE_ARCHITECTURE arm64)
  elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "^arm")
    set(CPACK_DEBIAN_PACKAGE_ARCHITECTURE armhf)
  endif()
  # dpkg-shlibdeps must read the binaries with the target's objdump and look the libraries up in
  # the target's multiarch directory: both follow DEB_HOST_ARCH, which cpack sets from this file.
  set(CPACK_PROJECT_CONFIG_FILE ${PROJECT_BINARY_DIR}/CPackDebHostArch.cmake)
  file(WRITE ${CPACK_PROJECT_CONFIG_FILE}
       "set(ENV{DEB_HOST_ARCH} ${CPACK_DEBIAN_PACKAGE_ARCHITECTURE})\n")
endif()

include(CPack)
