// Recoverable errors in the layers above kernels/ (files, recipes,
// checkpoints, rendezvous) are absl::Status / absl::StatusOr values that gain
// context as they propagate; kernels/ itself only has the aborting CHECKs of
// kernels/check.h. These are the three idioms every layer uses for them:
//
//   ROTOR_RETURN_IF_ERROR(write_text(path, text));        // return the error as it is
//   ROTOR_ASSIGN_OR_RETURN(IndexedDataset ds, IndexedDataset::open(path));
//   return with_context(s, absl::StrCat(path, ": "));     // same code, "path: message"
//
// Header-only; a target that includes it links absl::status already.
#pragma once

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace rotor {

// `s` with `prefix` put before its message (code and payloads kept); OK stays OK.
//   with_context(NotFound("no such file"), "data.heldout: ") -> NotFound("data.heldout: no such file")
inline absl::Status with_context(const absl::Status& s, absl::string_view prefix) {
  if (s.ok()) return s;
  absl::Status out(s.code(), absl::StrCat(prefix, s.message()));
  s.ForEachPayload([&out](absl::string_view url, const absl::Cord& payload) { out.SetPayload(url, payload); });
  return out;
}

}  // namespace rotor

// Evaluates `expr` (an absl::Status) once and returns it from the enclosing
// function when it is not OK.
#define ROTOR_RETURN_IF_ERROR(expr)                                    \
  do {                                                                 \
    if (::absl::Status rotor_status_ = (expr); !rotor_status_.ok()) {  \
      return rotor_status_;                                            \
    }                                                                  \
  } while (false)

// Evaluates `rexpr` (an absl::StatusOr<T>) once; returns its status from the
// enclosing function when it is not OK, else moves its value into `lhs` (a
// declaration such as `Foo x` or an existing variable).
#define ROTOR_ASSIGN_OR_RETURN(lhs, rexpr) \
  ROTOR_ASSIGN_OR_RETURN_IMPL_(ROTOR_STATUS_CONCAT_(rotor_statusor_, __LINE__), lhs, rexpr)

#define ROTOR_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                 \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = *std::move(statusor)

#define ROTOR_STATUS_CONCAT_(a, b) ROTOR_STATUS_CONCAT_INNER_(a, b)
#define ROTOR_STATUS_CONCAT_INNER_(a, b) a##b
