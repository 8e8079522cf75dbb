#include "kernels/tensor.h"

#include "kernels/cuda/memory.h"
#include "kernels/cuda/step_ops.h"
#include "kernels/elementwise.h"
#include "kernels/memory.h"
#include "kernels/sim.h"

#include <malloc.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <sstream>
#include <type_traits>

namespace rotor {

CheckFailure::CheckFailure(const char* file, int line, const char* statement)
    : file_(file), line_(line), statement_(statement) {}

CheckFailure::~CheckFailure() {
  char host[256] = "?";
  gethostname(host, sizeof(host) - 1);
  std::cerr << "rotor CHECK failed on " << host << " pid " << getpid() << " at " << file_
            << ":" << line_ << ": " << statement_ << " " << message_.str() << std::endl;
  std::abort();
}

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::kF32: return 4;
    case DType::kBF16: return 2;
    case DType::kI32: return 4;
    case DType::kI64: return 8;
    case DType::kF64: return 8;
  }
  return 0;
}

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kF32: return "f32";
    case DType::kBF16: return "bf16";
    case DType::kI32: return "i32";
    case DType::kI64: return "i64";
    case DType::kF64: return "f64";
  }
  return "?";
}

std::string Device::str() const {
  switch (type) {
    case DeviceType::kCpu: return "cpu";
    case DeviceType::kSim: return "sim";
    case DeviceType::kCuda: break;
  }
  return "cuda:" + std::to_string(index);
}

Shape::Shape(std::initializer_list<int64_t> dims) : Shape(std::vector<int64_t>(dims)) {}

Shape::Shape(const std::vector<int64_t>& dims) {
  ROTOR_CHECK_LE(static_cast<int>(dims.size()), kMaxDims) << "too many dims";
  ndim_ = static_cast<int>(dims.size());
  for (int i = 0; i < ndim_; ++i) {
    ROTOR_CHECK_GE(dims[i], 0) << "negative dim";
    dims_[i] = dims[i];
  }
}

int64_t Shape::operator[](int i) const {
  const int j = i < 0 ? i + ndim_ : i;
  ROTOR_CHECK(j >= 0 && j < ndim_) << "dim " << i << " of shape " << str();
  return dims_[j];
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int i = 0; i < ndim_; ++i) n *= dims_[i];
  return n;
}

std::string Shape::str() const {
  std::ostringstream s;
  s << "[";
  for (int i = 0; i < ndim_; ++i) s << (i ? ", " : "") << dims_[i];
  s << "]";
  return s.str();
}

bool Shape::operator==(const Shape& o) const {
  if (ndim_ != o.ndim_) return false;
  for (int i = 0; i < ndim_; ++i)
    if (dims_[i] != o.dims_[i]) return false;
  return true;
}

Storage::~Storage() {
  if (ledger >= 0) memory_internal::account_release(ledger, static_cast<int64_t>(bytes), static_cast<MemoryTag>(tag));
  if (deleter && data) deleter(data);
}

namespace {

// glibc serves blocks above a (dynamic) threshold with mmap and returns them to
// the kernel on free, and trims the heap top; a training step that allocates
// and frees the same activation-sized buffers every micro-batch then pays a
// page fault per 4 KiB on every step (seen in `perf`: sgemm writing into fresh
// pages; 2x on the demo model). Raising both thresholds once keeps freed
// buffers in the process for reuse, as a caching allocator would. Process-wide
// and idempotent; a program that must return memory can set them back.
bool keep_freed_host_buffers() {
  mallopt(M_MMAP_THRESHOLD, 512 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  return true;
}

}  // namespace

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  [[maybe_unused]] static const bool tuned = keep_freed_host_buffers();
#ifndef ROTOR_WITH_CUDA
  ROTOR_CHECK(!device.is_cuda()) << "allocation on " << device.str()
                               << " needs the CUDA backend (rotor was built without CUDA)";
#endif
  Tensor t;
  t.storage_ = std::make_shared<Storage>();
  t.shape_ = shape;
  t.dtype_ = dtype;
  const size_t bytes = t.nbytes();
  const MemoryTag tag = current_memory_tag();
  t.storage_->tag = static_cast<uint8_t>(tag);
  t.storage_->ledger = memory_internal::account_allocation(device, static_cast<int64_t>(bytes), tag);
  if (device.is_sim()) {  // host memory from the sim caching allocator (kernels/sim.h)
    t.storage_->data = sim::allocate(bytes);
    t.storage_->bytes = bytes;
    t.storage_->device = device;
    t.storage_->deleter = [](void* q) { sim::release(q); };
    return t;
  }
  if (device.is_cuda()) {  // the device's caching allocator (kernels/cuda/memory.h)
    const int index = device.index;
    t.storage_->data = cuda::allocate(index, bytes);
    t.storage_->bytes = bytes;
    t.storage_->device = device;
    t.storage_->deleter = [index](void* q) { cuda::release(index, q); };
    return t;
  }
  // 64-byte alignment: a cache line, and enough for any SIMD load.
  const size_t rounded = (bytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
  ROTOR_CHECK(p != nullptr) << "out of host memory allocating " << bytes << " bytes";
  t.storage_->data = p;
  t.storage_->bytes = bytes;
  t.storage_->device = device;
  t.storage_->deleter = [](void* q) { std::free(q); };
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.zero();
  return t;
}

Tensor Tensor::wrap(void* data, const Shape& shape, DType dtype, Device device) {
  Tensor t;
  t.storage_ = std::make_shared<Storage>();
  t.shape_ = shape;
  t.dtype_ = dtype;
  t.storage_->data = data;
  t.storage_->bytes = t.nbytes();
  t.storage_->device = device;
  return t;
}

Tensor Tensor::from_vector(const std::vector<double>& values, const Shape& shape,
                           DType dtype) {
  ROTOR_CHECK_EQ(static_cast<int64_t>(values.size()), shape.numel());
  Tensor t = empty(shape, dtype);
  for (size_t i = 0; i < values.size(); ++i) {
    const double v = values[i];
    switch (dtype) {
      case DType::kF32: t.data<float>()[i] = static_cast<float>(v); break;
      case DType::kF64: t.data<double>()[i] = v; break;
      case DType::kBF16: t.data<bf16>()[i] = bf16(static_cast<float>(v)); break;
      case DType::kI32: t.data<int32_t>()[i] = static_cast<int32_t>(v); break;
      case DType::kI64: t.data<int64_t>()[i] = static_cast<int64_t>(v); break;
    }
  }
  return t;
}

void* Tensor::raw(SourceLocation where) const {
  ROTOR_CHECK(defined()) << "undefined tensor (accessed at " << where.file << ":" << where.line << ")";
  if (storage_->device.is_sim()) sim::check_host_access(*this, "raw()/data()", where);
  return static_cast<char*>(storage_->data) + offset_;
}

void* Tensor::device_ptr() const {
  ROTOR_CHECK(defined()) << "undefined tensor";
  return static_cast<char*>(storage_->data) + offset_;
}

Tensor Tensor::view(const Shape& shape) const {
  ROTOR_CHECK_EQ(shape.numel(), numel()) << "view " << str() << " as " << shape.str();
  Tensor t = *this;
  t.shape_ = shape;
  return t;
}

Tensor Tensor::narrow(int64_t start, int64_t length) const {
  ROTOR_CHECK_GE(ndim(), 1);
  ROTOR_CHECK(start >= 0 && length >= 0 && start + length <= dim(0))
      << "rows [" << start << ", " << start + length << ") of " << str();
  std::vector<int64_t> dims = shape_.vec();
  const int64_t row = numel() / (dims[0] == 0 ? 1 : dims[0]);
  dims[0] = length;
  Tensor t = *this;
  t.shape_ = Shape(dims);
  t.offset_ = offset_ + static_cast<size_t>(start * row) * dtype_size(dtype_);
  return t;
}

Tensor Tensor::select(int64_t i) const {
  Tensor t = narrow(i, 1);
  std::vector<int64_t> dims = shape_.vec();
  dims.erase(dims.begin());
  t.shape_ = Shape(dims);
  return t;
}

Tensor Tensor::clone() const {
  ROTOR_CHECK(defined()) << "clone of an undefined tensor";
  Tensor t = empty(shape_, dtype_, device());
  t.copy_from(*this);
  return t;
}

Tensor Tensor::to(Device target) const {
  ROTOR_CHECK(defined()) << "to(" << target.str() << ") of an undefined tensor";
  if (target == device()) return *this;
  Tensor t = empty(shape_, dtype_, target);
  t.copy_from(*this);
  return t;
}

namespace {
int device_index(const Tensor& t) { return t.device().is_cpu() ? -1 : t.device().index; }

// Same-dtype byte copies that involve a sim tensor: counted when they cross
// between host and sim, plain device copies between sim tensors.
void copy_sim_bytes(const Tensor& dst, const Tensor& src) {
  void* to = dst.device_ptr();
  const void* from = src.device_ptr();
  if (src.device().is_cpu()) return sim::copy_to_device(to, from, dst.nbytes());
  if (dst.device().is_cpu()) return sim::copy_to_host(to, from, dst.nbytes());
  std::memmove(to, from, dst.nbytes());
}
}  // namespace

namespace {

template <class Dst, class Src>
void convert(Dst* dst, const Src* src, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if constexpr (std::is_same_v<Dst, bf16>) {
      dst[i] = bf16(static_cast<float>(src[i]));
    } else if constexpr (std::is_same_v<Src, bf16>) {
      dst[i] = static_cast<Dst>(static_cast<float>(src[i]));
    } else {
      dst[i] = static_cast<Dst>(src[i]);
    }
  }
}

template <class Dst>
void convert_from(Dst* dst, const Tensor& src) {
  const int64_t n = src.numel();
  switch (src.dtype()) {
    case DType::kF32: convert(dst, src.data<float>(), n); break;
    case DType::kF64: convert(dst, src.data<double>(), n); break;
    case DType::kBF16: convert(dst, src.data<bf16>(), n); break;
    case DType::kI32: convert(dst, src.data<int32_t>(), n); break;
    case DType::kI64: convert(dst, src.data<int64_t>(), n); break;
  }
}

}  // namespace

void Tensor::copy_from(const Tensor& src) const {
  ROTOR_CHECK(defined() && src.defined()) << "copy_from: undefined tensor";
  ROTOR_CHECK(src.shape() == shape_) << "copy " << src.str() << " into " << str();
  if (device().is_sim() || src.device().is_sim()) {
    ROTOR_CHECK(!device().is_cuda() && !src.device().is_cuda()) << "copy " << src.str() << " into " << str();
    if (src.dtype() == dtype_) {
      copy_sim_bytes(*this, src);
    } else if (src.device() == device()) {
      sim::KernelScope kernel(*this);  // the conversion runs "on the device"
      Tensor::wrap(device_ptr(), shape_, dtype_).copy_from(Tensor::wrap(src.device_ptr(), shape_, src.dtype()));
    } else {  // move first, then convert where this lives
      copy_from(src.to(device()));
    }
    return;
  }
  if (!device().is_cpu() || !src.device().is_cpu()) {
    if (src.dtype() == dtype_) {
      cuda::copy_bytes(raw(), device_index(*this), src.raw(), device_index(src), nbytes());
    } else if (src.device() == device()) {
      cast(src, *this);  // kernels/elementwise.h, on the device
    } else {  // another device and dtype: move first, then convert where this lives
      copy_from(src.to(device()));
    }
    return;
  }
  if (src.dtype() == dtype_) {
    std::memmove(raw(), src.raw(), nbytes());
    return;
  }
  switch (dtype_) {
    case DType::kF32: convert_from(data<float>(), src); break;
    case DType::kF64: convert_from(data<double>(), src); break;
    case DType::kBF16: convert_from(data<bf16>(), src); break;
    case DType::kI32: convert_from(data<int32_t>(), src); break;
    case DType::kI64: convert_from(data<int64_t>(), src); break;
  }
}

void Tensor::fill(double value) const {
  ROTOR_CHECK(defined()) << "fill: undefined tensor";
  if (device().is_sim()) {  // the fill kernel, on the device
    sim::KernelScope kernel(*this);
    Tensor::wrap(device_ptr(), shape_, dtype_).fill(value);
    return;
  }
  if (!device().is_cpu()) {
    if (value == 0) return zero();
#ifdef ROTOR_WITH_CUDA
    if (dtype_ == DType::kF32 || dtype_ == DType::kBF16) return cuda::fill(*this, value);  // a kernel
#endif
    Tensor host = empty(shape_, dtype_);  // other dtypes: through a host copy
    host.fill(value);
    copy_from(host);
    return;
  }
  const int64_t n = numel();
  switch (dtype_) {
    case DType::kF32: std::fill_n(data<float>(), n, static_cast<float>(value)); break;
    case DType::kF64: std::fill_n(data<double>(), n, value); break;
    case DType::kBF16: std::fill_n(data<bf16>(), n, bf16(static_cast<float>(value))); break;
    case DType::kI32: std::fill_n(data<int32_t>(), n, static_cast<int32_t>(value)); break;
    case DType::kI64: std::fill_n(data<int64_t>(), n, static_cast<int64_t>(value)); break;
  }
}

void Tensor::zero() const {
  ROTOR_CHECK(defined()) << "zero: undefined tensor";
  if (device().is_sim()) {
    sim::KernelScope kernel(*this);
    std::memset(raw(), 0, nbytes());
    return;
  }
  if (!device().is_cpu()) return cuda::zero_bytes(raw(), device().index, nbytes());
  std::memset(raw(), 0, nbytes());
}

double Tensor::item(int64_t i, SourceLocation where) const {
  ROTOR_CHECK(defined()) << "item: undefined tensor";
  ROTOR_CHECK(i >= 0 && i < numel()) << "item " << i << " of " << str();
  if (device().is_sim()) sim::check_host_access(*this, "item()", where);
  if (device().is_cuda()) return view({numel()}).narrow(i, 1).to(Device::cpu()).item(0);
  switch (dtype_) {
    case DType::kF32: return data<float>()[i];
    case DType::kF64: return data<double>()[i];
    case DType::kBF16: return static_cast<float>(data<bf16>()[i]);
    case DType::kI32: return data<int32_t>()[i];
    case DType::kI64: return static_cast<double>(data<int64_t>()[i]);
  }
  return 0;
}

std::vector<double> Tensor::to_vector(SourceLocation where) const {
  if (defined() && device().is_sim()) sim::check_host_access(*this, "to_vector()", where);
  if (defined() && !device().is_cpu()) return to(Device::cpu()).to_vector();
  std::vector<double> v(static_cast<size_t>(numel()));
  for (int64_t i = 0; i < numel(); ++i) v[i] = item(i);
  return v;
}

std::string Tensor::str() const {
  if (!defined()) return "undefined";
  return std::string(dtype_name(dtype_)) + shape_.str() + " " + device().str();
}

void check_cpu(const Tensor& t, const char* what) {
  ROTOR_CHECK(t.defined()) << what << ": undefined tensor";
  if (omp_in_parallel()) {  // a worker thread of a kernel's loop: no scope of its own to compare with
    ROTOR_CHECK(!t.device().is_cuda()) << what << ": expected host memory, got " << t.str();
    return;
  }
  const bool sim_op = sim::in_sim_op();
  ROTOR_CHECK(sim_op ? t.device().is_sim() : t.device().is_cpu())
      << what << ": expected a " << (sim_op ? "sim" : "cpu") << " tensor (all tensors of an op on one device), got "
      << t.str();
}

DType compute_dtype(DType storage) {
  ROTOR_CHECK(storage == DType::kF32 || storage == DType::kBF16 || storage == DType::kF64)
      << "compute_dtype: " << dtype_name(storage) << " is not a float storage dtype";
  return storage == DType::kF64 ? DType::kF64 : DType::kF32;
}

void check_float(const Tensor& t, const char* what) {
  ROTOR_CHECK(t.dtype() == DType::kF32 || t.dtype() == DType::kBF16 || t.dtype() == DType::kF64)
      << what << ": float tensors are f32 or bf16 (f64 in the CPU reference, for gradient "
      << "checks), got " << t.str();
}

void check_compute_dtype(const Tensor& t, DType storage, const char* op, const char* what) {
  const DType want = compute_dtype(storage);
  ROTOR_CHECK(t.defined()) << op << ": " << what << " is undefined";
  ROTOR_CHECK(t.dtype() == want)
      << op << ": " << what << " must be " << dtype_name(want) << " with "
      << dtype_name(storage) << " activations (statistics and weight gradients are kept in the "
      << "compute dtype, kernels/tensor.h), got " << t.str();
}

void check_same_dtype(const Tensor& a, const Tensor& b, const char* what) {
  ROTOR_CHECK(a.dtype() == b.dtype())
      << what << ": dtype mismatch " << a.str() << " vs " << b.str();
}

}  // namespace rotor
