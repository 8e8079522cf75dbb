// The ops of kernels/reduce.h, vocab_slice.h and position_scale.h for tensors
// on a CUDA device (the public op routes here through ROTOR_ON_GPU,
// kernels/cuda/ops.h). Declared without CUDA types; defined in step_ops.cc
// (CUDA builds only: in a CPU build no tensor reaches them).
#pragma once

#include <cstdint>

#include "kernels/tensor.h"

namespace rotor::cuda {

void sum_into(const Tensor& x, const Tensor& acc);
void squared_norm_into(const Tensor& x, const Tensor& acc, double divisor);
void embedding_slice_forward(const Tensor& ids, const Tensor& table, int64_t vocab_start, const Tensor& out);
void embedding_slice_backward(const Tensor& ids, const Tensor& dout, int64_t vocab_start, const Tensor& dtable);
void cross_entropy_slice_partials(const Tensor& lse, const Tensor& loss, const Tensor& targets,
                                  int64_t vocab_start, int64_t vocab_rows, const Tensor& max_lse,
                                  const Tensor& sums);
void cross_entropy_slice_combine(const Tensor& max_lse, const Tensor& sums, const Tensor& targets,
                                 const Tensor& lse, const Tensor& loss);
void log_position_scale(const Tensor& pos, int64_t base_length, double min, const Tensor& out);
// Tensor::fill of an f32 or bf16 GPU tensor, as a kernel (no host copy).
void fill(const Tensor& t, double value);

}  // namespace rotor::cuda
