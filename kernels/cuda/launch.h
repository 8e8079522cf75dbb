// Launchers of the CUDA kernels: plain pointers, element counts and a stream.
//
// The op API (kernels/*.h) takes Tensors; for a tensor on a CUDA device the
// op unpacks it (kernels/cuda/ops.cc) and calls one of these. They are kept
// free of Tensor so that the .cu files compile as C++17 device code without
// the C++20 host headers.
//
// Conventions (every launcher):
// - `Float` names the element type of the activation buffers of the call
//   (kF32 or kBF16); statistics (rstd, lse, entropy, loss, dloss) and weight
//   gradients (RMSNorm dw, embedding dtable) are `float*`, f32 whatever
//   `Float` is (the mixed-precision contract of kernels/tensor.h). Arithmetic
//   is f32 (sums and norms accumulate in f32, squared_norm in f64); bf16
//   results are rounded to nearest even once, at the store.
// - Shapes are the op header's (row-major, contiguous); sizes are int64_t.
// - Outputs marked (=) are overwritten, (+=) accumulated, exactly as the CPU
//   reference does.
// - The call is asynchronous on `stream`; launch errors are checked at once
//   (ROTOR_CUDA_CHECK on cudaGetLastError), execution errors surface at the
//   next synchronising call.
// - Launchers that need temporary memory take a `scratch` buffer of at least
//   the bytes their *_scratch_bytes() function returns (the caller takes it
//   from the caching allocator; no launcher allocates).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "kernels/cuda/fault.h"

namespace rotor::cuda {

enum class Float : int { kF32 = 0, kBF16 = 1 };

// ---- elementwise (kernels/elementwise.h) ---------------------------------
// out = a + b (=); out may alias a or b.
void add(Float t, const void* a, const void* b, void* out, int64_t n, cudaStream_t stream);
// y += alpha * x.
void axpy(Float t, double alpha, const void* x, void* y, int64_t n, cudaStream_t stream);
// x *= alpha.
void scale(Float t, void* x, double alpha, int64_t n, cudaStream_t stream);
// *result (device memory, one double) = sum of x^2 in f64, in a fixed order
// (the same bits every run).
size_t squared_norm_scratch_bytes(int64_t n);
void squared_norm(Float t, const void* x, int64_t n, double* result, void* scratch,
                  cudaStream_t stream);
// dst = src converted; to bf16 rounds to nearest even.
void cast(Float src_t, const void* src, Float dst_t, void* dst, int64_t n, cudaStream_t stream);

// ---- embedding (kernels/embedding.h) --------------------------------------
// out[n, :] = table[ids[n], :] (=); table [V, D]; ids [N] i32 in [0, V),
// checked on the device: an id outside is reported in `fault` (the device's
// record, kernels/cuda/fault.h) and its row of out is zeroed.
void embedding_forward(Float t, const int32_t* ids, const void* table, void* out, int64_t n,
                       int64_t d, int64_t v, FaultRecord* fault, cudaStream_t stream);
// dtable[ids[n], :] += dout[n, :]: dout `Float`, dtable f32 (f32 atomic adds:
// the order of repeated ids varies, so sums may differ in the last bit
// between runs; never bf16 atomics, which would round at every add). An id
// outside [0, V) is reported in `fault` and its row skipped.
void embedding_backward(Float t, const int32_t* ids, const void* dout, float* dtable, int64_t n,
                        int64_t d, int64_t v, FaultRecord* fault, cudaStream_t stream);

// ---- RMSNorm (kernels/rmsnorm.h) -------------------------------------------
// x, w, y `Float`: y [N, D] (=); rstd [N] f32 (=).
void rmsnorm_forward(Float t, const void* x, const void* w, double eps, void* y, float* rstd,
                     int64_t n, int64_t d, cudaStream_t stream);
// dy, x, w, dx `Float`, rstd f32: dx (=), dw f32 (+=; per-block partial sums
// in f32 in scratch, then one deterministic reduction).
size_t rmsnorm_backward_scratch_bytes(int64_t n, int64_t d);
void rmsnorm_backward(Float t, const void* dy, const void* x, const void* w, const float* rstd,
                      void* dx, float* dw, int64_t n, int64_t d, void* scratch,
                      cudaStream_t stream);

// ---- RoPE with the query multiplier (kernels/rope_apply.h) ----------------
// x, y [B, T, H, D] (y may alias x); pos [B, T] i32; inv_freq [D/2] f32;
// scale [B, T] (same Float as x) or null. Angles in f32 as the CPU reference.
void rope_forward(Float t, const void* x, const int32_t* pos, const float* inv_freq,
                  double attention_factor, const void* scale, void* y, int64_t b, int64_t tokens,
                  int64_t heads, int64_t d, cudaStream_t stream);
void rope_backward(Float t, const void* dy, const int32_t* pos, const float* inv_freq,
                   double attention_factor, const void* scale, void* dx, int64_t b,
                   int64_t tokens, int64_t heads, int64_t d, cudaStream_t stream);

// ---- SwiGLU (kernels/swiglu.h) ----------------------------------------------
void swiglu_forward(Float t, const void* gate, const void* up, void* h, int64_t n,
                    cudaStream_t stream);
void swiglu_backward(Float t, const void* dh, const void* gate, const void* up, void* dgate,
                     void* dup, int64_t n, cudaStream_t stream);

// ---- AdamW (kernels/adamw.h) ------------------------------------------------
// param, m, v: f32 [n] (master weights and moments); grad: `grad_t`;
// working: `working_t` or null (the compute copy, written after the update).
void adamw_step(float* param, Float grad_t, const void* grad, float* m, float* v, int64_t n,
                int64_t step, double lr, double beta1, double beta2, double eps,
                double weight_decay, double grad_scale, Float working_t, void* working,
                cudaStream_t stream);

// ---- cross-entropy tiles (kernels/cross_entropy.h) --------------------------
// The op forms logits tiles [rows, cols] (f32, row-major, leading dimension
// `ld`) of vocabulary columns [col0, col0 + cols) with cuBLASLt; these turn
// them into the loss, LSE and dlogits.
// Every per-row array (targets, max, sum, target_logit, loss, lse, dloss) is
// indexed by the tile row r in [0, rows): the caller offsets the pointers to
// the tile's first row. vocab_slice: the vocabulary rows of this slice (w).
// Online LSE over tiles: per row r, running max[r] and sum[r] (f32; the tile
// with col0 == 0 starts them, so they need no initialisation), and
// target_logit[r] set when targets[r] - vocab_offset lies in [col0, col0 +
// cols) (ce_finish reads it only then).
void ce_tile_accumulate(const float* logits, int64_t rows, int64_t cols, int64_t ld,
                        int64_t col0, const int32_t* targets, int64_t vocab_offset, float* max,
                        float* sum, float* target_logit, cudaStream_t stream);
// After the last tile: lse[r] = max + log(sum); loss[r] = lse - target_logit
// when the target is in this slice (found[r]), lse when it is elsewhere
// (vocabulary-parallel partial), 0 when targets[r] < 0. loss and lse are f32.
// A target >= target_limit (the vocabulary: vocab_size, or the slice's rows
// without vocabulary parallelism) is reported in `fault` (kernels/cuda/fault.h),
// as the CPU op CHECKs it, with its position row0 + r (row0: the call's first
// row among the op's tokens); its loss is then lse, as a target elsewhere.
void ce_finish(const float* max, const float* sum, const float* target_logit,
               const int32_t* targets, int64_t vocab_offset, int64_t vocab_slice,
               int64_t target_limit, float* loss, float* lse, int64_t rows, int64_t row0,
               FaultRecord* fault, cudaStream_t stream);
// In place: logits[r, c] <- dloss[r] * (exp(logits[r, c] - lse[r]) - [c + col0 ==
// targets[r] - vocab_offset]); rows with targets[r] < 0 become 0. lse and
// dloss are f32.
void ce_tile_dlogits(float* logits, int64_t rows, int64_t cols, int64_t ld, int64_t col0,
                     const int32_t* targets, int64_t vocab_offset, const float* lse,
                     const float* dloss, cudaStream_t stream);

// ---- attention (kernels/attention.h) -----------------------------------------
// A simple correct kernel; bf16 calls with head dim 64 or 128 (16-byte
// aligned buffers) are routed to the flash kernels (kernels/cuda/
// flash_attention.h; the backward then takes its f32 dq accumulator from the
// caching allocator for the duration of the call):
// q [B, Tq, Hq, D], k/v [B, Tk, Hkv, D], out [B, Tq, Hq, D] (=) in `Float`;
// lse and entropy [B, Hq, Tq] (=) f32 (entropy may be null); q_seg/k_seg may
// be null. Visibility as kernels/attention.h.
struct AttentionShape {
  int64_t b = 0, tq = 0, tk = 0, hq = 0, hkv = 0, d = 0;
  bool causal = true;
  double scale = 1.0;
};
void attention_forward(Float t, const AttentionShape& s, const void* q, const void* k,
                       const void* v, const int32_t* q_pos, const int32_t* k_pos,
                       const int32_t* q_seg, const int32_t* k_seg, void* out, float* lse,
                       float* entropy, cudaStream_t stream);
// dq, dk, dv (+=, `Float`), from the final out and f32 lse of the query rows. dk and dv
// take atomic adds from every query row; in bf16 each add rounds, so long
// sequences lose accuracy there (the flash kernels of the next issue
// accumulate in f32 per key block instead). Head dim <= 512.
void attention_backward(Float t, const AttentionShape& s, const void* q, const void* k,
                        const void* v, const int32_t* q_pos, const int32_t* k_pos,
                        const int32_t* q_seg, const int32_t* k_seg, const void* out,
                        const float* lse, const void* dout, void* dq, void* dk, void* dv,
                        cudaStream_t stream);
// Log-sum-exp merge of one more block into the accumulator (in place);
// rows = B * Hq * Tq, out rows of d elements are [B, Tq, Hq, D] ordered, so
// the kernel maps (b, h, i) to out row (b * Tq + i) * Hq + h. out_* `Float`,
// lse_* and entropy_* f32.
void attention_merge(Float t, const AttentionShape& s, void* out_acc, float* lse_acc,
                     float* entropy_acc, const void* out_blk, const float* lse_blk,
                     const float* entropy_blk, cudaStream_t stream);

}  // namespace rotor::cuda
