// When a CPU kernel is worth an OpenMP team. Every `#pragma omp parallel` in
// kernels/ carries `if (worth_threads(work))`, where work counts the scalar
// operations of the call (elements times the inner length).
//
// Why: starting a team costs microseconds, and when more threads than cores
// are runnable (two test processes under `ctest -j2`, a busy CI host) the
// spinning team members take whole scheduler slices. Measured on the 2-core
// dev box: the tiny-model finite-difference test (~10^5 kernel calls of at most
// a few hundred operations each) took 0.5 s alone and 6 to 12 s with two more
// copies running beside it; a CI host timed it out at 600 s. Below the
// threshold one thread does the work in well under the cost of waking a team.
// 2^16 is a round number above every call of the unit tests' tiny models and
// below every call of a real model (hidden 256 x 128 tokens = 2^15 elements
// times an inner length), not a tuned value.
#pragma once

#include <cstdint>

namespace rotor::cpu {

constexpr int64_t kMinParallelWork = int64_t{1} << 16;

inline bool worth_threads(int64_t work) { return work >= kMinParallelWork; }

}  // namespace rotor::cpu
