// Flash attention (FlashAttention-2 style) for bf16 q/k/v, head dim 64 or 128:
// the fast path of kernels/attention.h on the GPU. Same semantics as the CPU
// reference and the simple kernels of kernels/cuda/attention.cu (GQA, global
// positions q_pos/k_pos for the causal test, optional segment ids, lse and
// optional entropy, the same masked-row identity), but tiled: no [L, L]
// matrix is formed, bf16 tensor-core MMA (nvcuda::wmma 16x16x16, portable
// sm_80 path) with f32 accumulation and an f32 online softmax.
//
// kernels/cuda/attention.cu routes attention_forward / attention_backward here
// when Float is bf16, D is 64 or 128 and every pointer is 16-byte aligned.
//
// Shapes (row-major, contiguous; B batch, Tq/Tk tokens, Hq/Hkv heads, D dim):
//   q, out, dout, dq   [B, Tq, Hq, D]   bf16
//   k, v, dk, dv       [B, Tk, Hkv, D]  bf16
//   q_pos, q_seg       [B, Tq] i32 (q_seg may be null, then k_seg too)
//   k_pos, k_seg       [B, Tk] i32
//   lse, entropy       [B, Hq, Tq]      f32 (entropy may be null): the statistics
//                                       are f32 whatever the activations are
//                                       (kernels/tensor.h). A bf16 lse would be
//                                       off by up to 2^-9 |lse| (0.03 at lse = 16),
//                                       and the backward's exp(s - lse) by ~3%.
// Declared without Tensor so that host C++20 code (benchmarks) and the .cu
// files (C++17) both include it.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "kernels/cuda/launch.h"

namespace rotor::cuda {

// True when the flash kernels take this call: bf16, D in {64, 128}, every
// given pointer 16-byte aligned (the tiles move with 16-byte loads).
bool flash_attention_supported(Float t, const AttentionShape& s, const void* const* ptrs, int n_ptrs);

// out (=), lse (=), entropy (= or null). Rows that see no key: out = 0,
// lse = -inf, entropy = 0.
void flash_attention_forward(const AttentionShape& s, const void* q, const void* k, const void* v,
                             const int32_t* q_pos, const int32_t* k_pos, const int32_t* q_seg,
                             const int32_t* k_seg, void* out, float* lse, float* entropy,
                             cudaStream_t stream);

// Bytes of `scratch` that flash_attention_backward needs: the f32 dq
// accumulator [B, Tq, Hq, D] and delta = rowsum(dout * out) [B, Hq, Tq] f32.
size_t flash_attention_backward_scratch_bytes(const AttentionShape& s);

// dq, dk, dv (+=, rounded to bf16 once per element at the end), from the
// *final* out and lse of the query rows (kernels/attention.h). `scratch`: at
// least flash_attention_backward_scratch_bytes(s) bytes, 16-byte aligned.
void flash_attention_backward(const AttentionShape& s, const void* q, const void* k, const void* v,
                              const int32_t* q_pos, const int32_t* k_pos, const int32_t* q_seg,
                              const int32_t* k_seg, const void* out, const float* lse,
                              const void* dout, void* dq, void* dk, void* dv, void* scratch,
                              cudaStream_t stream);

}  // namespace rotor::cuda
