# cmake -DEXE=<test binary> [-DEMULATOR=<emulator>] [-DCATCH_MAJOR=3] -P check-tests-listed.cmake
# Fails unless the Catch2 binary lists at least one test (and if a test name has a ';', below).
# catch_discover_tests silently registers zero tests when the binary cannot run (a cross build
# without its emulator), which would make ctest report success for tests that never ran;
# gw_add_test runs this after every link.
# Catch2 2 lists names alone with --list-test-names-only; Catch2 3 with --list-tests at quiet verbosity.
if(CATCH_MAJOR EQUAL 3)
  set(list_args --list-tests --verbosity quiet)
else()
  set(list_args --list-test-names-only)
endif()
execute_process(
  COMMAND ${EMULATOR} ${EXE} ${list_args}
  OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
string(STRIP "${out}" out)
if(out STREQUAL "")
  message(FATAL_ERROR "${EXE} lists no tests (exit: ${rc}; ${err}). "
    "A cross build needs its emulator: toolchains/setup.sh --arm64 installs qemu-user-static.")
endif()
# A ';' in a test name is CMake's list separator: catch_discover_tests registers the two halves as
# two tests that match nothing, run nothing and pass. Refuse such names.
string(FIND "${out}" ";" semicolon)
if(NOT semicolon EQUAL -1)
  string(REGEX MATCH "[^\n]*;[^\n]*" name "${out}")
  message(FATAL_ERROR "${EXE}: the test name '${name}' has a ';', which would split it into two "
    "ctest entries that run nothing. Use ' - ' or ', ' instead.")
endif()
