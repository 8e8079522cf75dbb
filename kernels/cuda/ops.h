// The ops of kernels/*.h for tensors on a CUDA device: same signatures and
// semantics as the CPU reference (each op header is the spec), activations in
// f32 or bf16, statistics (lse, entropy, loss, dloss, rstd) and weight
// gradients (dw, dtable, matmul's f32 c) in f32 (the mixed-precision contract
// of kernels/tensor.h); f32 accumulation. The public op routes here when its first
// tensor is on a GPU (ROTOR_ON_GPU below); these check that every tensor is
// on that same device, unpack them and call kernels/cuda/launch.h (matmul and
// the cross-entropy tiles: cuBLASLt, kernels/cuda/matmul.cc). Everything is
// queued on the device's compute stream; squared_norm waits for its result.
#pragma once

#include "kernels/adamw.h"
#include "kernels/attention.h"
#include "kernels/cross_entropy.h"
#include "kernels/sim.h"
#include "kernels/tensor.h"

namespace rotor::cuda {

void add(const Tensor& a, const Tensor& b, const Tensor& out);
void axpy(double alpha, const Tensor& x, const Tensor& y);
void scale(const Tensor& x, double alpha);
double squared_norm(const Tensor& x);
void cast(const Tensor& src, const Tensor& dst);
void embedding_forward(const Tensor& ids, const Tensor& table, const Tensor& out);
void embedding_backward(const Tensor& ids, const Tensor& dout, const Tensor& dtable);
void rmsnorm_forward(const Tensor& x, const Tensor& w, double eps, const Tensor& y, const Tensor& rstd);
void rmsnorm_backward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& rstd,
                      const Tensor& dx, const Tensor& dw);
void rope_forward(const Tensor& x, const Tensor& pos, const Tensor& inv_freq, double attention_factor,
                  const Tensor& scale, const Tensor& y);
void rope_backward(const Tensor& dy, const Tensor& pos, const Tensor& inv_freq, double attention_factor,
                   const Tensor& scale, const Tensor& dx);
void swiglu_forward(const Tensor& gate, const Tensor& up, const Tensor& h);
void swiglu_backward(const Tensor& dh, const Tensor& gate, const Tensor& up, const Tensor& dgate,
                     const Tensor& dup);
void adamw_step(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v, int64_t step,
                const AdamWHyper& hyper, double grad_scale, const Tensor& working);
void matmul(const Tensor& a, const Tensor& b, const Tensor& c, bool trans_a, bool trans_b, double alpha,
            double beta);
void cross_entropy_forward(const Tensor& h, const Tensor& w, const Tensor& targets, const Tensor& loss,
                           const Tensor& lse, CrossEntropyChunks chunks, int64_t vocab_start,
                           int64_t vocab_size);
void cross_entropy_backward(const Tensor& h, const Tensor& w, const Tensor& targets, const Tensor& lse,
                            const Tensor& dloss, const Tensor& dh, const Tensor& dw,
                            CrossEntropyChunks chunks, int64_t vocab_start, int64_t vocab_size);
void cross_entropy_forward_backward(const Tensor& h, const Tensor& w, const Tensor& targets,
                                    const Tensor& dloss, const Tensor& loss, const Tensor& lse,
                                    const Tensor& dh, const Tensor& dw, CrossEntropyChunks chunks);
void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionMask& mask,
                       double scale, const Tensor& out, const Tensor& lse, const Tensor& entropy);
void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionMask& mask,
                        double scale, const Tensor& out, const Tensor& lse, const Tensor& dout,
                        const Tensor& dq, const Tensor& dk, const Tensor& dv);
void attention_merge(const Tensor& out_acc, const Tensor& lse_acc, const Tensor& entropy_acc,
                     const Tensor& out_blk, const Tensor& lse_blk, const Tensor& entropy_blk);

}  // namespace rotor::cuda

// First statement of a public op: runs the CUDA version when `t` is on a GPU;
// otherwise the CPU kernel that follows runs, and when `t` is on the sim
// device (kernels/sim.h) it runs inside a sim::KernelScope, which lets it read
// and write sim memory until the op returns. Without CUDA only the scope
// remains (no tensor can be on a GPU).
#ifdef ROTOR_WITH_CUDA
#define ROTOR_ON_GPU(t, call)                  \
  if ((t).device().is_cuda()) return call;     \
  const ::rotor::sim::KernelScope rotor_sim_kernel_scope_(t)
#else
#define ROTOR_ON_GPU(t, call) const ::rotor::sim::KernelScope rotor_sim_kernel_scope_(t)
#endif
