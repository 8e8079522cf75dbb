# The CI short pass of the fuzzers, included from tests/CMakeLists.txt:
#   fuzz.short runs tests/fuzz/run 20 (20 s per target), which configures and
#   builds its own clang build in <build>/fuzz (the main build may be g++).
# Added only when clang++ is found and links a libFuzzer program
# (Debian: clang, libclang-rt-14-dev; and libomp-dev for the project's OpenMP).
find_program(ROTOR_FUZZ_CLANGXX NAMES clang++)
if(ROTOR_FUZZ_CLANGXX AND NOT DEFINED ROTOR_FUZZ_LIBFUZZER_OK)
  set(_probe ${CMAKE_CURRENT_BINARY_DIR}/fuzz_probe)
  file(WRITE ${_probe}.cc
       "#include <cstddef>\n#include <cstdint>\n"
       "extern \"C\" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }\n")
  execute_process(COMMAND ${ROTOR_FUZZ_CLANGXX} -fsanitize=fuzzer,address ${_probe}.cc -o ${_probe}
                  RESULT_VARIABLE _rc OUTPUT_QUIET ERROR_QUIET)
  if(_rc EQUAL 0)
    set(ROTOR_FUZZ_LIBFUZZER_OK ON CACHE INTERNAL "clang++ links libFuzzer programs")
  else()
    set(ROTOR_FUZZ_LIBFUZZER_OK OFF CACHE INTERNAL "clang++ links libFuzzer programs")
  endif()
  file(REMOVE ${_probe}.cc ${_probe})
endif()
if(ROTOR_FUZZ_CLANGXX AND ROTOR_FUZZ_LIBFUZZER_OK)
  add_test(NAME fuzz.short COMMAND ${PROJECT_SOURCE_DIR}/tests/fuzz/run 20)
  set_tests_properties(fuzz.short PROPERTIES
                       TIMEOUT 900 LABELS fuzz
                       ENVIRONMENT "FUZZ_BUILD_DIR=${PROJECT_BINARY_DIR}/fuzz;FUZZ_SEED=1")
else()
  message(STATUS "rotor: no clang++ with libFuzzer; test fuzz.short not added")
endif()
