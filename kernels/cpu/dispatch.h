// Dtype dispatch and bf16 storage for the CPU reference.
//
// Storage types and the type their math runs in (kernels/tensor.h, compute_dtype):
//   float  -> float
//   double -> double   (finite-difference tests)
//   bf16   -> float    (load widens exactly; store rounds to nearest even, once)
//
// Element-wise ops are written once over the storage type T:
//   dispatch_storage(x.dtype(), "op", [&]<class T>() {
//     using C = compute_t<T>;
//     for (...) store(y[i], C(2) * load(x[i]));
//   });
// For float and double, load/store are plain reads and writes, so those paths
// compile to exactly the code they had before bf16 existed (same results, bit
// for bit). The BLAS-based ops (matmul, attention, cross-entropy) instead
// widen bf16 tensors to f32 copies, run their f32 code and round the outputs
// back once (widen / wide_output / narrow_into below).
#pragma once

#include <type_traits>

#include "kernels/tensor.h"

namespace rotor::cpu {

template <class T>
struct ComputeOf {
  using type = T;
};
template <>
struct ComputeOf<bf16> {
  using type = float;
};
template <class T>
using compute_t = typename ComputeOf<T>::type;

// An element widened to its compute type.
template <class T>
inline compute_t<T> load(const T& x) {
  if constexpr (std::is_same_v<T, bf16>) {
    return static_cast<float>(x);
  } else {
    return x;
  }
}

// dst = x, rounded to nearest even when dst is bf16.
template <class T>
inline void store(T& dst, compute_t<T> x) {
  if constexpr (std::is_same_v<T, bf16>) {
    dst = bf16(x);
  } else {
    dst = x;
  }
}

// Runs a templated lambda with T = float or double according to a dtype (the
// compute dtypes; ops that take bf16 either widen first or use dispatch_storage).
template <class F>
void dispatch_float(DType dtype, const char* op, F&& f) {
  switch (dtype) {
    case DType::kF32: f.template operator()<float>(); break;
    case DType::kF64: f.template operator()<double>(); break;
    default: ROTOR_CHECK(false) << op << ": unsupported dtype " << dtype_name(dtype);
  }
}

// Runs a templated lambda with T = float, double or bf16 (a storage type).
template <class F>
void dispatch_storage(DType dtype, const char* op, F&& f) {
  switch (dtype) {
    case DType::kF32: f.template operator()<float>(); break;
    case DType::kF64: f.template operator()<double>(); break;
    case DType::kBF16: f.template operator()<bf16>(); break;
    default: ROTOR_CHECK(false) << op << ": unsupported dtype " << dtype_name(dtype);
  }
}

// An f32 copy of a bf16 tensor; any other tensor (or an undefined one) itself.
inline Tensor widen(const Tensor& t) {
  if (!t.defined() || t.dtype() != DType::kBF16) return t;
  Tensor w = Tensor::empty(t.shape(), DType::kF32, t.device());
  w.copy_from(t);
  return w;
}

// Where an op writes an output it overwrites (=): an uninitialised f32 tensor
// for a bf16 output, else the output itself.
inline Tensor wide_output(const Tensor& t) {
  if (!t.defined() || t.dtype() != DType::kBF16) return t;
  return Tensor::empty(t.shape(), DType::kF32, t.device());
}

// Stores a result computed in `wide` (from widen or wide_output) into `t`:
// rounds to nearest even into a bf16 t; nothing when `wide` is t itself.
inline void narrow_into(const Tensor& wide, const Tensor& t) {
  if (t.defined() && t.dtype() == DType::kBF16) t.copy_from(wide);
}

}  // namespace rotor::cpu
