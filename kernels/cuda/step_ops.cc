// Tensor-level CUDA ops of kernels/cuda/step_ops.h: checks, then the
// launchers of step_launch.h on the device's compute stream.
#include "kernels/cuda/step_ops.h"

#include <cmath>

#include "kernels/cuda/context.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/step_launch.h"

namespace rotor::cuda {
namespace {

// Every defined tensor on the GPU of the first; returns its compute stream.
cudaStream_t stream_for(std::initializer_list<const Tensor*> ts, const char* op) {
  const Tensor& first = **ts.begin();
  for (const Tensor* t : ts) {
    ROTOR_CHECK(t->defined() && t->device() == first.device() && t->device().is_cuda())
        << op << ": every tensor on one GPU, got " << first.str() << " and " << t->str();
  }
  return device_context(first.device().index).stream;
}

Float float_type(const Tensor& t, const char* op) {
  ROTOR_CHECK(t.dtype() == DType::kF32 || t.dtype() == DType::kBF16) << op << ": f32 or bf16, got " << t.str();
  return t.dtype() == DType::kF32 ? Float::kF32 : Float::kBF16;
}

void check_f32(std::initializer_list<const Tensor*> ts, const char* op) {
  for (const Tensor* t : ts) ROTOR_CHECK(t->dtype() == DType::kF32) << op << ": f32 on the GPU, got " << t->str();
}

void check_acc(const Tensor& acc, const char* op) {
  ROTOR_CHECK(acc.dtype() == DType::kF64 && acc.numel() == 1) << op << ": acc must be [1] f64, got " << acc.str();
}

}  // namespace

void sum_into(const Tensor& x, const Tensor& acc) {
  cudaStream_t s = stream_for({&x, &acc}, "sum_into");
  check_acc(acc, "sum_into");
  cuda::sum_into(float_type(x, "sum_into"), x.raw(), x.numel(), acc.data<double>(), s);
}

void squared_norm_into(const Tensor& x, const Tensor& acc, double divisor) {
  cudaStream_t s = stream_for({&x, &acc}, "squared_norm_into");
  check_acc(acc, "squared_norm_into");
  Tensor value = Tensor::empty({1}, DType::kF64, x.device());
  Tensor work = Tensor::empty({static_cast<int64_t>(squared_norm_scratch_bytes(x.numel()) / 8 + 1)}, DType::kF64, x.device());
  cuda::squared_norm(float_type(x, "squared_norm_into"), x.raw(), x.numel(), value.data<double>(), work.raw(), s);
  cuda::add_scaled_scalar(value.data<double>(), 1.0 / divisor, acc.data<double>(), s);
}

void embedding_slice_forward(const Tensor& ids, const Tensor& table, int64_t vocab_start, const Tensor& out) {
  cudaStream_t s = stream_for({&ids, &table, &out}, "embedding_slice_forward");
  ROTOR_CHECK(ids.dtype() == DType::kI32 && table.ndim() == 2 && out.dtype() == table.dtype() &&
              out.numel() == ids.numel() * table.dim(1))
      << "embedding_slice_forward: " << ids.str() << " " << table.str() << " " << out.str();
  cuda::embedding_slice_forward(float_type(table, "embedding_slice_forward"), ids.data<int32_t>(), table.raw(),
                                out.raw(), ids.numel(), table.dim(1), vocab_start, table.dim(0), s);
}

void embedding_slice_backward(const Tensor& ids, const Tensor& dout, int64_t vocab_start, const Tensor& dtable) {
  cudaStream_t s = stream_for({&ids, &dout, &dtable}, "embedding_slice_backward");
  ROTOR_CHECK(ids.dtype() == DType::kI32 && dtable.ndim() == 2 && dout.numel() == ids.numel() * dtable.dim(1))
      << "embedding_slice_backward: " << ids.str() << " " << dout.str() << " " << dtable.str();
  cuda::embedding_slice_backward(float_type(dout, "embedding_slice_backward"), ids.data<int32_t>(), dout.raw(),
                                 float_type(dtable, "embedding_slice_backward"), dtable.raw(), ids.numel(),
                                 dtable.dim(1), vocab_start, dtable.dim(0), s);
}

void cross_entropy_slice_partials(const Tensor& lse, const Tensor& loss, const Tensor& targets,
                                  int64_t vocab_start, int64_t vocab_rows, const Tensor& max_lse,
                                  const Tensor& sums) {
  cudaStream_t s = stream_for({&lse, &loss, &targets, &max_lse, &sums}, "cross_entropy_slice_partials");
  check_f32({&lse, &loss, &max_lse, &sums}, "cross_entropy_slice_partials");
  cuda::cross_entropy_slice_partials(lse.data<float>(), loss.data<float>(), targets.data<int32_t>(), lse.numel(),
                                     vocab_start, vocab_rows, max_lse.data<float>(), sums.data<float>(), s);
}

void cross_entropy_slice_combine(const Tensor& max_lse, const Tensor& sums, const Tensor& targets,
                                 const Tensor& lse, const Tensor& loss) {
  cudaStream_t s = stream_for({&lse, &loss, &targets, &max_lse, &sums}, "cross_entropy_slice_combine");
  check_f32({&lse, &loss, &max_lse, &sums}, "cross_entropy_slice_combine");
  cuda::cross_entropy_slice_combine(max_lse.data<float>(), sums.data<float>(), targets.data<int32_t>(),
                                    lse.numel(), lse.data<float>(), loss.data<float>(), s);
}

void fill(const Tensor& t, double value) {
  cudaStream_t s = stream_for({&t}, "fill");
  cuda::fill(float_type(t, "fill"), t.raw(), value, t.numel(), s);
}

void log_position_scale(const Tensor& pos, int64_t base_length, double min, const Tensor& out) {
  cudaStream_t s = stream_for({&pos, &out}, "log_position_scale");
  ROTOR_CHECK(pos.dtype() == DType::kI32 && pos.numel() == out.numel())
      << "log_position_scale: " << pos.str() << " " << out.str();
  cuda::log_position_scale(pos.data<int32_t>(), pos.numel(), std::log(static_cast<double>(base_length)), min,
                           float_type(out, "log_position_scale"), out.raw(), s);
}

}  // namespace rotor::cuda
