// libFuzzer target: trainer/safetensors.h: SafetensorsFile::open of the input as a file, then
// read_into of every tensor it lists.
// Body in tests/fuzz/targets.h (shared with tests/trainer/fuzz_regression_test.cc).
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const rotor::fuzz::TempDir dir("safetensors");  // removed at exit
  rotor::fuzz::safetensors_one_input(dir.path(), data, size);
  return 0;
}
