// CUDA kernels of kernels/embedding.h.
//
// Parallelisation: one block per token n (grid n, 128 threads); the threads
// stride over the D columns of the row, in 16-byte packs (4 f32 / 8 bf16) when
// D is a multiple of the pack and the buffers are 16-byte aligned.
// forward copies table rows (bit-exact); backward adds dout rows (f32 or
// bf16, widened) into the f32 dtable with f32 atomicAdd, so repeated ids
// accumulate in a run-dependent order (never bf16 atomics: a bf16 gradient
// would round at every add).
// Ids are bounds-checked on the device: an id outside [0, V) is never used as
// an address (forward writes a zero row, backward skips the row) and is
// reported through the device's fault record (kernels/cuda/fault.h), which
// the op checks; the CPU kernel CHECKs the same before it starts. (Unchecked,
// a bad id from a corrupt data shard read or wrote V * D elements away.)
#include "kernels/cuda/common.cuh"

namespace rotor::cuda {

namespace {

constexpr int kThreads = 128;

// ids [n], table [V, d] -> out [n, d]; N elements per access.
template <class T, int N>
__global__ void embedding_forward_kernel(const int32_t* ids, const T* table, T* out, int64_t d, int64_t v,
                                         FaultRecord* fault) {
  const int64_t row = blockIdx.x;
  const int64_t id = ids[row];
  T* dst = out + row * d;
  if (id < 0 || id >= v) {  // every thread of the block sees the same id
    if (threadIdx.x == 0) report_fault(fault, kFaultEmbeddingId, id, row, v);
    for (int64_t c = threadIdx.x; c < d; c += blockDim.x) dst[c] = from_f32<T>(0.0f);
    return;
  }
  const T* src = table + id * d;
  for (int64_t c = static_cast<int64_t>(threadIdx.x) * N; c < d; c += static_cast<int64_t>(blockDim.x) * N)
    store_pack<T, N>(dst + c, load_pack<T, N>(src + c));
}

// dtable[ids[n], :] += dout[n, :]; dtable f32.
template <class T, int N>
__global__ void embedding_backward_kernel(const int32_t* ids, const T* dout, float* dtable, int64_t d, int64_t v,
                                          FaultRecord* fault) {
  const int64_t row = blockIdx.x;
  const int64_t id = ids[row];
  if (id < 0 || id >= v) {
    if (threadIdx.x == 0) report_fault(fault, kFaultEmbeddingId, id, row, v);
    return;
  }
  const T* src = dout + row * d;
  float* dst = dtable + id * d;
  for (int64_t c = static_cast<int64_t>(threadIdx.x) * N; c < d; c += static_cast<int64_t>(blockDim.x) * N) {
    const Pack<T, N> g = load_pack<T, N>(src + c);
#pragma unroll
    for (int k = 0; k < N; ++k) atomicAdd(dst + c + k, to_f32(g.v[k]));
  }
}

}  // namespace

void embedding_forward(Float t, const int32_t* ids, const void* table, void* out, int64_t n,
                       int64_t d, int64_t v, FaultRecord* fault, cudaStream_t stream) {
  if (n == 0 || d == 0) return;
  dispatch(t, [&](auto tag) {
    using T = decltype(tag);
    constexpr int V = kVec<T>;
    const T* tp = static_cast<const T*>(table);
    T* op = static_cast<T*>(out);
    if (d % V == 0 && aligned16(table) && aligned16(out)) {
      embedding_forward_kernel<T, V><<<static_cast<unsigned>(n), kThreads, 0, stream>>>(ids, tp, op, d, v, fault);
    } else {
      embedding_forward_kernel<T, 1><<<static_cast<unsigned>(n), kThreads, 0, stream>>>(ids, tp, op, d, v, fault);
    }
    ROTOR_CUDA_LAUNCHED("embedding_forward_kernel", stream);
  });
}

void embedding_backward(Float t, const int32_t* ids, const void* dout, float* dtable, int64_t n,
                        int64_t d, int64_t v, FaultRecord* fault, cudaStream_t stream) {
  if (n == 0 || d == 0) return;
  dispatch(t, [&](auto tag) {
    using T = decltype(tag);
    constexpr int V = kVec<T>;
    const T* gp = static_cast<const T*>(dout);
    if (d % V == 0 && aligned16(dout)) {
      embedding_backward_kernel<T, V><<<static_cast<unsigned>(n), kThreads, 0, stream>>>(ids, gp, dtable, d, v, fault);
    } else {
      embedding_backward_kernel<T, 1><<<static_cast<unsigned>(n), kThreads, 0, stream>>>(ids, gp, dtable, d, v, fault);
    }
    ROTOR_CUDA_LAUNCHED("embedding_backward_kernel", stream);
  });
}

}  // namespace rotor::cuda
