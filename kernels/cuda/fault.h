// Bad inputs that a kernel finds on the device (a token id outside its
// embedding table, a cross-entropy target outside the vocabulary), reported on
// the host.
//
// The CPU ops CHECK such inputs before touching memory. A kernel cannot stop
// the process, and the host cannot look at device-resident ids without a
// synchronisation, so a kernel that meets one instead
//   - leaves memory alone for it (reads and writes nothing out of bounds:
//     embedding forward writes a zero row, backward skips the row), and
//   - records the first offence of the device in a FaultRecord that lives in
//     mapped, page-locked host memory (one per device, created on first use).
// The host reads the record without synchronising (a plain load from host
// memory) and fails with a CHECK naming the kernel, the value, its position and
// the bound:
//   - in the op that launched such a kernel, after the launch (a fault of an
//     earlier call whose kernel has run by now);
//   - after every copy to or from the host, which synchronises the compute
//     stream anyway (Tensor::item, to(cpu)), and in cuda::synchronize(): so a
//     training step reports it at the latest when it reads its loss;
//   - right after the launch under ROTOR_CUDA_SYNC_CHECK=1 (cuda_check.h).
// Header for host code and .cu files (C++17); the device side is
// report_fault() in common.cuh.
#pragma once

#include <cstdint>

namespace rotor::cuda {

// Which check a FaultRecord comes from (FaultRecord::kind).
enum FaultKind : int32_t {
  kFaultNone = 0,
  kFaultEmbeddingId = 1,     // embedding_forward / embedding_backward: id outside [0, V)
  kFaultCrossEntropyTarget = 2,  // cross-entropy: target >= the vocabulary size
};

// The first fault of a device. Written by one kernel thread: it claims the
// record (atomicCAS on `claimed`), writes kind/value/index/bound, fences
// (__threadfence_system) and then sets `ready`, which is what the host polls.
struct FaultRecord {
  int32_t claimed;
  int32_t ready;
  int32_t kind;
  int32_t pad;
  int64_t value;  // the offending id / target
  int64_t index;  // its position in the ids / targets of the call
  int64_t bound;  // the exclusive upper bound it broke (V)
};

// The device pointer of `device`'s record, for the kernels' last argument.
FaultRecord* fault_record(int device);
// CHECK-fails with the recorded fault of `device`, if any (no synchronisation).
void check_faults(int device);

}  // namespace rotor::cuda
