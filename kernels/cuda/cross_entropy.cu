// CUDA kernels of the cross-entropy tiles (kernels/cross_entropy.h): the op
// forms f32 logits tiles [rows, cols] (leading dimension ld) of vocabulary
// columns [col0, col0 + cols) with cuBLASLt; these kernels turn them into the
// online LSE, the loss and the dlogits. Row-indexed arrays (targets, max, sum,
// target_logit, lse, dloss, loss) are indexed by the tile row r in [0, rows),
// all f32 whatever the dtype of h and w.
//
// ce_tile_accumulate: one block (256 threads) per row; block max, then block
//   sum of exp(logit - max), f32, fixed order; thread 0 updates the row's
//   running max/sum and target_logit.
// ce_finish: one thread per row.
// ce_tile_dlogits: grid (rows, column chunks), threads stride over the row's
//   columns; f32, the product and the one-hot subtraction rounded separately
//   as in the CPU reference (g exp(x - lse) - g); the result stays f32.
#include "kernels/cuda/common.cuh"

namespace rotor::cuda {

namespace {

constexpr int kThreads = 256;

// logits [rows, ld] (cols used); targets, max, sum, target_logit [rows].
__global__ void ce_tile_accumulate_kernel(const float* logits, int64_t cols, int64_t ld,
                                          int64_t col0, const int32_t* targets,
                                          int64_t vocab_offset, float* max, float* sum,
                                          float* target_logit) {
  __shared__ float red[32];
  const int64_t r = blockIdx.x;
  const float* row = logits + r * ld;
  float mx = -INFINITY;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) mx = nan_max(mx, row[c]);
  const bool first = col0 == 0;  // the row's first tile starts the running state
  const float run_max = first ? -INFINITY : max[r];
  mx = nan_max(block_max(mx, red), run_max);
  float s = 0.0f;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) s += expf(row[c] - mx);
  s = block_sum(s, red);
  if (threadIdx.x == 0) {
    sum[r] = (first ? 0.0f : sum[r] * expf(run_max - mx)) + s;
    max[r] = mx;
    const int64_t target = static_cast<int64_t>(targets[r]) - vocab_offset;  // in this slice
    if (target >= col0 && target < col0 + cols) target_logit[r] = row[target - col0];
  }
}

// max, sum, target_logit, targets [rows] -> loss, lse [rows] (f32).
// A target >= target_limit is reported (fault.h); the tile kernels never
// address memory with a target, so it is only wrong, not out of bounds.
__global__ void ce_finish_kernel(const float* max, const float* sum, const float* target_logit,
                                 const int32_t* targets, int64_t vocab_offset,
                                 int64_t vocab_slice, int64_t target_limit, float* loss, float* lse,
                                 int64_t rows, int64_t row0, FaultRecord* fault) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= rows) return;
  if (targets[r] >= target_limit)
    report_fault(fault, kFaultCrossEntropyTarget, targets[r], row0 + r, target_limit);
  const float l = max[r] + logf(sum[r]);
  const int64_t target = static_cast<int64_t>(targets[r]) - vocab_offset;
  const bool found = target >= 0 && target < vocab_slice;
  float out;
  if (targets[r] < 0) {
    out = 0.0f;
  } else {
    out = found ? l - target_logit[r] : l;
  }
  lse[r] = l;
  loss[r] = out;
}

// logits [rows, ld] (cols used), in place; targets, lse, dloss [rows] (f32).
__global__ void ce_tile_dlogits_kernel(float* logits, int64_t cols, int64_t ld, int64_t col0,
                                       const int32_t* targets, int64_t vocab_offset,
                                       const float* lse, const float* dloss) {
  const int64_t r = blockIdx.x;
  float* row = logits + r * ld;
  const int64_t stride = static_cast<int64_t>(gridDim.y) * blockDim.x;
  const int64_t first = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x;
  if (targets[r] < 0) {
    for (int64_t c = first; c < cols; c += stride) row[c] = 0.0f;
    return;
  }
  const int64_t target = static_cast<int64_t>(targets[r]) - vocab_offset - col0;  // tile column
  const float g = dloss[r], l = lse[r];
  for (int64_t c = first; c < cols; c += stride) {
    float v = __fmul_rn(g, expf(row[c] - l));
    if (c == target) v = __fsub_rn(v, g);
    row[c] = v;
  }
}

}  // namespace

void ce_tile_accumulate(const float* logits, int64_t rows, int64_t cols, int64_t ld,
                        int64_t col0, const int32_t* targets, int64_t vocab_offset, float* max,
                        float* sum, float* target_logit, cudaStream_t stream) {
  if (rows == 0 || cols == 0) return;
  ce_tile_accumulate_kernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(
      logits, cols, ld, col0, targets, vocab_offset, max, sum, target_logit);
  ROTOR_CUDA_LAUNCHED("ce_tile_accumulate_kernel", stream);
}

void ce_finish(const float* max, const float* sum, const float* target_logit,
               const int32_t* targets, int64_t vocab_offset, int64_t vocab_slice,
               int64_t target_limit, float* loss, float* lse, int64_t rows, int64_t row0,
               FaultRecord* fault, cudaStream_t stream) {
  if (rows == 0) return;
  ce_finish_kernel<<<grid_for(rows, kThreads, INT32_MAX), kThreads, 0, stream>>>(
      max, sum, target_logit, targets, vocab_offset, vocab_slice, target_limit, loss, lse, rows, row0, fault);
  ROTOR_CUDA_LAUNCHED("ce_finish_kernel", stream);
}

void ce_tile_dlogits(float* logits, int64_t rows, int64_t cols, int64_t ld, int64_t col0,
                     const int32_t* targets, int64_t vocab_offset, const float* lse,
                     const float* dloss, cudaStream_t stream) {
  if (rows == 0 || cols == 0) return;
  const dim3 grid(static_cast<unsigned>(rows), grid_for(cols, kThreads * 4, 65535));
  ce_tile_dlogits_kernel<<<grid, kThreads, 0, stream>>>(logits, cols, ld, col0, targets,
                                                         vocab_offset, lse, dloss);
  ROTOR_CUDA_LAUNCHED("ce_tile_dlogits_kernel", stream);
}

}  // namespace rotor::cuda
