// Tensor: a handle to a contiguous, row-major block of typed memory.
//
// - dtypes: f32, bf16, i32, i64 (the model's types) and f64 (used by the
//   reference kernels when the tests check gradients by finite differences).
// - device: cpu, cuda:N (memory from that device's caching allocator,
//   kernels/cuda/memory.h), or sim, the checked stand-in device for tests
//   (kernels/sim.h: host memory that host code may not touch). Each op runs
//   where its tensors are: the CPU reference (cpu and sim), or the CUDA
//   kernels (kernels/cuda/ops.h) when built with CUDA.
// - shape: 0 to 4 dims. There are no strides: every tensor is contiguous, and
//   views are only those that stay contiguous (reshape, a range of rows along
//   dim 0, one index of dim 0).
// - owner or view: `empty`/`zeros` allocate and own their storage; `wrap` views
//   memory owned by someone else (an mmap'ed file, a caller's buffer); views of
//   either keep the storage alive by sharing it.
//
// A Tensor is a handle like a pointer: copying it copies the handle, not the
// data, and `const Tensor&` means the handle is not reseated. Ops therefore
// take outputs as `const Tensor&` too; each op's header says which arguments
// it writes and whether it overwrites (=) or accumulates (+=).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "kernels/bf16.h"
#include "kernels/check.h"

namespace rotor {

enum class DType : uint8_t { kF32, kBF16, kI32, kI64, kF64 };

size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);

template <class T>
struct DTypeOf;
template <>
struct DTypeOf<float> {
  static constexpr DType value = DType::kF32;
};
template <>
struct DTypeOf<double> {
  static constexpr DType value = DType::kF64;
};
template <>
struct DTypeOf<bf16> {
  static constexpr DType value = DType::kBF16;
};
template <>
struct DTypeOf<int32_t> {
  static constexpr DType value = DType::kI32;
};
template <>
struct DTypeOf<int64_t> {
  static constexpr DType value = DType::kI64;
};

enum class DeviceType : uint8_t { kCpu, kCuda, kSim };

struct Device {
  DeviceType type = DeviceType::kCpu;
  int index = 0;

  static Device cpu() { return {DeviceType::kCpu, 0}; }
  static Device cuda(int index) { return {DeviceType::kCuda, index}; }
  static Device sim() { return {DeviceType::kSim, 0}; }
  bool is_cpu() const { return type == DeviceType::kCpu; }
  bool is_cuda() const { return type == DeviceType::kCuda; }
  bool is_sim() const { return type == DeviceType::kSim; }
  bool operator==(const Device&) const = default;
  std::string str() const;
};

inline constexpr int kMaxDims = 4;

class Shape {
 public:
  Shape() = default;
  Shape(std::initializer_list<int64_t> dims);
  explicit Shape(const std::vector<int64_t>& dims);

  int ndim() const { return ndim_; }
  int64_t operator[](int i) const;  // negative i counts from the end
  int64_t numel() const;
  std::vector<int64_t> vec() const { return {dims_.begin(), dims_.begin() + ndim_}; }
  std::string str() const;  // "[2, 3]"
  bool operator==(const Shape& o) const;

 private:
  std::array<int64_t, kMaxDims> dims_{};
  int ndim_ = 0;
};

// Memory with a deleter; a view of external memory has an empty deleter.
struct Storage {
  void* data = nullptr;
  size_t bytes = 0;
  Device device;
  std::function<void(void*)> deleter;
  // Accounting (kernels/memory.h): the ledger counting these bytes (-1: not
  // counted, a wrapped view) and their MemoryTag.
  int8_t ledger = -1;
  uint8_t tag = 0;
  ~Storage();
};

enum class MemoryTag : uint8_t;  // kernels/memory.h

class Tensor {
 public:
  Tensor() = default;  // undefined tensor

  static Tensor empty(const Shape& shape, DType dtype, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype, Device device = Device::cpu());
  // New tensors on the device and with the dtype of `ref` (defined): its
  // shape, or `shape`. Scratch buffers are made this way so that they follow
  // their inputs to whatever device those live on.
  static Tensor empty_like(const Tensor& ref) { return empty(ref.shape(), ref.dtype(), ref.device()); }
  static Tensor empty_like(const Tensor& ref, const Shape& shape) {
    return empty(shape, ref.dtype(), ref.device());
  }
  static Tensor zeros_like(const Tensor& ref) { return zeros(ref.shape(), ref.dtype(), ref.device()); }
  static Tensor zeros_like(const Tensor& ref, const Shape& shape) {
    return zeros(shape, ref.dtype(), ref.device());
  }
  // A non-owning view of `data`, which must outlive every view made of it.
  static Tensor wrap(void* data, const Shape& shape, DType dtype,
                     Device device = Device::cpu());
  // CPU tensor copied from host values (converted to `dtype`).
  static Tensor from_vector(const std::vector<double>& values, const Shape& shape,
                            DType dtype);

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int ndim() const { return shape_.ndim(); }
  int64_t dim(int i) const { return shape_[i]; }
  int64_t numel() const { return shape_.numel(); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_ ? storage_->device : Device::cpu(); }
  // True when this handle's storage was allocated by rotor (not `wrap`ped).
  bool owns_storage() const { return storage_ && static_cast<bool>(storage_->deleter); }

  // Host pointers to the data: for cpu tensors, and for kernels on sim
  // tensors (a host access to a sim tensor outside a kernel aborts, naming
  // the caller: kernels/sim.h). Never for a GPU tensor's elements.
  void* raw(SourceLocation where = SourceLocation::current()) const;
  template <class T>
  T* data(SourceLocation where = SourceLocation::current()) const {
    ROTOR_CHECK(dtype_ == DTypeOf<T>::value)
        << "tensor is " << dtype_name(dtype_) << ", accessed as "
        << dtype_name(DTypeOf<T>::value);
    return static_cast<T*>(raw(where));
  }
  // The address of the data on its device, for libraries that take device
  // pointers (communicators) and for identity checks; not for host reads.
  void* device_ptr() const;
  // True when both views start at the same address.
  bool same_data(const Tensor& o) const { return device_ptr() == o.device_ptr(); }

  // Same data, another shape with the same element count.
  Tensor view(const Shape& shape) const;
  // Rows [start, start + length) of dim 0.
  Tensor narrow(int64_t start, int64_t length) const;
  // Row i of dim 0, with dim 0 removed.
  Tensor select(int64_t i) const;

  // New owner with a copy of the data, on the same device.
  Tensor clone() const;
  // This tensor on `device`: itself when it is there already, else a copy.
  Tensor to(Device device) const;
  // Element-wise copy with conversion between dtypes. Across devices (host
  // <-> GPU, GPU <-> GPU) the bytes are copied (kernels/cuda/memory.h:
  // finished on return when the host is involved); a dtype change on a GPU
  // runs the cast kernel.
  void copy_from(const Tensor& src) const;
  void fill(double value) const;
  void zero() const;

  // Element i converted to double (a GPU tensor is copied to the host first:
  // for tests and logging, not hot paths; on sim these are host accesses and
  // abort: code meant for devices copies explicitly, `t.to(Device::cpu())`).
  double item(int64_t i = 0, SourceLocation where = SourceLocation::current()) const;
  std::vector<double> to_vector(SourceLocation where = SourceLocation::current()) const;

  std::string str() const;  // "f32[2, 3] cpu"

 private:
  friend void set_memory_tag(const Tensor& t, MemoryTag tag);
  friend MemoryTag memory_tag(const Tensor& t);
  std::shared_ptr<Storage> storage_;
  size_t offset_ = 0;  // bytes from storage_->data
  Shape shape_;
  DType dtype_ = DType::kF32;
};

// The mixed-precision contract of the float ops (each op header names its
// tensors' dtypes in these terms):
// - activations and working weights (x, q, h, w, ...) share one *storage*
//   dtype: f32, bf16, or f64 (the CPU reference only, for finite differences);
// - the math runs in compute_dtype(storage): f32 for f32 and bf16 (bf16 is
//   loaded to f32 and rounded to nearest even once, at the store), f64 for f64;
// - statistics that later math exponentiates or divides by (attention
//   lse/entropy, cross-entropy loss/lse/dloss, RMSNorm rstd) and weight
//   gradients (matmul's f32 c, RMSNorm dw, embedding dtable, cross-entropy dw)
//   are stored in compute_dtype(storage): f32 when the activations are bf16.
//   A bf16 LSE would be off by up to |lse| 2^-8, which every recomputed
//   probability exp(s - lse) inherits as a relative error (6% at lse 16); a
//   bf16 weight gradient would lose the small updates of += accumulation.
DType compute_dtype(DType storage);

// Argument checks shared by the ops.
// `t` is memory the CPU kernel running now may read: a cpu tensor in a cpu op,
// a sim tensor in a sim op (kernels/sim.h). Mixing the two in one op fails,
// as mixing host and GPU pointers would.
void check_cpu(const Tensor& t, const char* what);
void check_float(const Tensor& t, const char* what);  // a float storage dtype: f32, bf16 or f64
void check_same_dtype(const Tensor& a, const Tensor& b, const char* what);
// t (`what` of `op`) is in compute_dtype(storage) (a statistic or a weight gradient).
void check_compute_dtype(const Tensor& t, DType storage, const char* op, const char* what);

}  // namespace rotor
