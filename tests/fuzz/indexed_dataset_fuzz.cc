// libFuzzer target: data/indexed_dataset.h: the input split into <prefix>.idx and <prefix>.bin
// ([u32 LE idx length][idx][bin]), IndexedDataset::open, every document read.
// Body in tests/fuzz/targets.h (shared with tests/trainer/fuzz_regression_test.cc).
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const rotor::fuzz::TempDir dir("indexed_dataset");  // removed at exit
  rotor::fuzz::indexed_dataset_one_input(dir.path(), data, size);
  return 0;
}
