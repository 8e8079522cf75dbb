// Launchers of kernels/cuda/step_kernels.cu: the device side of the ops that
// keep a training step on the device (kernels/reduce.h, vocab_slice.h,
// position_scale.h). Conventions as kernels/cuda/launch.h.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/cuda/launch.h"

namespace rotor::cuda {

// *acc += sum of x [n] (f64 sums; one block, fixed order: the same bits every run).
void sum_into(Float t, const void* x, int64_t n, double* acc, cudaStream_t stream);
// *acc += *value * factor (one thread; after squared_norm wrote *value).
void add_scaled_scalar(const double* value, double factor, double* acc, cudaStream_t stream);
// out [n, d] (=) table rows of ids in [vocab_start, vocab_start + rows), else 0.
void embedding_slice_forward(Float t, const int32_t* ids, const void* table, void* out, int64_t n, int64_t d,
                             int64_t vocab_start, int64_t rows, cudaStream_t stream);
// dtable (f32 or t) += dout rows of the ids in the slice (atomicAdd).
void embedding_slice_backward(Float t, const int32_t* ids, const void* dout, Float dtable_type, void* dtable,
                              int64_t n, int64_t d, int64_t vocab_start, int64_t rows, cudaStream_t stream);
// kernels/vocab_slice.h, all float buffers f32.
void cross_entropy_slice_partials(const float* lse, const float* loss, const int32_t* targets, int64_t n,
                                  int64_t vocab_start, int64_t vocab_rows, const float* max_lse, float* sums,
                                  cudaStream_t stream);
void cross_entropy_slice_combine(const float* max_lse, const float* sums, const int32_t* targets, int64_t n,
                                 float* lse, float* loss, cudaStream_t stream);
// x [n] (t) = value (rounded to t once).
void fill(Float t, void* x, double value, int64_t n, cudaStream_t stream);
// out [n] (t) = max(min, ln(pos + 1) / ln(base_length)) in f64.
void log_position_scale(const int32_t* pos, int64_t n, double log_base, double min, Float t, void* out,
                        cudaStream_t stream);

}  // namespace rotor::cuda
