// Runs a templated lambda with T = float or double according to a dtype:
//   dispatch_float(x.dtype(), "rmsnorm", [&]<class T>() { ... x.data<T>() ... });
// The CPU reference computes in f32; f64 exists for finite-difference tests.
#pragma once

#include "kernels/tensor.h"

namespace rotor::cpu {

template <class F>
void dispatch_float(DType dtype, const char* op, F&& f) {
  switch (dtype) {
    case DType::kF32: f.template operator()<float>(); break;
    case DType::kF64: f.template operator()<double>(); break;
    default: ROTOR_CHECK(false) << op << ": unsupported dtype " << dtype_name(dtype);
  }
}

}  // namespace rotor::cpu
