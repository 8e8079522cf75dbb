// SwiGLU gate of the Llama MLP: h = silu(gate) * up, silu(g) = g * sigmoid(g).
// Shapes: gate, up, h, dh, dgate, dup all [N, F], one dtype: f32 or bf16 (f64
// on the CPU); math in f32 (f64), bf16 results rounded once at the store.
// Backward (=):  dup = dh * silu(gate)
//                dgate = dh * up * sigmoid(gate) * (1 + gate * (1 - sigmoid(gate)))
#pragma once

#include "kernels/tensor.h"

namespace rotor {

void swiglu_forward(const Tensor& gate, const Tensor& up, const Tensor& h);
void swiglu_backward(const Tensor& dh, const Tensor& gate, const Tensor& up,
                     const Tensor& dgate, const Tensor& dup);

}  // namespace rotor
