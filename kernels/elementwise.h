// Small element-wise and reduction ops used between the layers. Float tensors
// are f32 or bf16 (f64 on the CPU); the math is f32 (f64 for f64), a bf16
// result is rounded to nearest even once, at the store.
#pragma once

#include "kernels/tensor.h"

namespace rotor {

// out = a + b (=); out may alias a or b. Same shape and float dtype.
void add(const Tensor& a, const Tensor& b, const Tensor& out);
// y += alpha * x (x and y of one dtype).
void axpy(double alpha, const Tensor& x, const Tensor& y);
// x *= alpha.
void scale(const Tensor& x, double alpha);
// sum of x^2 over all elements (any float dtype), accumulated in f64 in a fixed order per thread
// count (so a run is reproducible); for gradient-norm clipping.
double squared_norm(const Tensor& x);
// dst = src converted (f32 <-> bf16 <-> f64), round to nearest even into bf16.
void cast(const Tensor& src, const Tensor& dst);
// dst[:, dst_col : dst_col + cols] = src[:, src_col : src_col + cols] for 2-D
// tensors of one dtype and row count, on any devices (host <-> GPU too): the
// column blocks of tensor-parallel shards (parallel/tensor_parallel.h).
void copy_columns(const Tensor& src, int64_t src_col, const Tensor& dst, int64_t dst_col, int64_t cols);

}  // namespace rotor
