// Internal to parallel/: argument checks and byte accounting shared by the
// Communicator implementations, so that every one checks and counts the same.
#pragma once

#include <cstdint>
#include <string>

#include "kernels/tensor.h"
#include "parallel/communicator.h"

namespace rotor::comm_internal {

// "all_reduce on communicator 'tp'" for CHECK messages.
std::string op_where(const char* op, const std::string& comm_name);

// A contiguous CPU tensor that is defined.
void check_tensor(const Tensor& t, const char* op, const std::string& comm_name, const char* what);
// f32, f64, i32 or i64 (the dtypes the reductions support).
void check_reducible(const Tensor& t, const char* op, const std::string& comm_name);
// in: [m, ...], out: [size * m, ...], same trailing shape and dtype.
void check_all_gather(const Tensor& in, const Tensor& out, int size, const std::string& comm_name);
void check_all_to_all(const Tensor& in, const Tensor& out, int size, const std::string& comm_name);
// in: [size * m, ...], out: [m, ...], same trailing shape and dtype (reducible).
void check_reduce_scatter(const Tensor& in, const Tensor& out, int size,
                          const std::string& comm_name);

// The payload each op must move from this rank (see CommStats).
inline int64_t all_reduce_bytes(int64_t bytes, int n) { return 2 * (n - 1) * bytes / n; }
inline int64_t gather_scatter_bytes(int64_t full_bytes, int n) { return (n - 1) * full_bytes / n; }

}  // namespace rotor::comm_internal
