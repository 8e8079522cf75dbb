// Writes a TensorBoard event file with known scalars into the directory given
// as argv[1] and prints its path. tests/trainer/tb_read.py (ctest tb.python_reader)
// reads it with an independent decoder and checks exactly these values, so
// the two lists must change together.
#include <cstdint>
#include <cstdio>
#include <string>

#include "trainer/tensorboard.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  auto w = rotor::TensorBoardWriter::open(argv[1]);
  if (!w.ok()) {
    std::fprintf(stderr, "tb_write_sample: %s\n", std::string(w.status().message()).c_str());
    return 1;
  }
  absl::Status s = w->add_scalar("train/loss", 0, 2.5, 1700000000.25);
  if (s.ok()) s = w->add_scalar("train/loss", 1, 0.1, 1700000001.5);
  if (s.ok()) s = w->add_scalar("train/lr", int64_t{1} << 40, -3e-4, 1700000002.0);
  if (s.ok()) s = w->add_scalar("train/grad_norm", 300, 1e10, 1700000002.75);
  if (s.ok()) {
    s = w->add_scalars(7, {{"eval/loss", 1.75}, {"eval/ppl", 5.75}, {"eval/acc", 0.3}},
                       1700000003.125);
  }
  if (s.ok()) s = w->flush();
  if (!s.ok()) {
    std::fprintf(stderr, "tb_write_sample: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  std::printf("%s\n", w->path().c_str());
  return 0;
}
