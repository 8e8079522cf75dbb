// CHECK macros for broken invariants (wrong shapes, wrong dtypes, out-of-range
// indices). They abort the process with host, pid, file:line, the failing
// statement and a streamed message, so a multi-rank job dies loudly instead of
// hanging in a collective. Recoverable errors (files, recipes) do not use these:
// they return absl::Status in the layers above kernels/.
//
//   ROTOR_CHECK(x.ndim() == 2) << "x must be [N, D], got " << x.shape_str();
//   ROTOR_CHECK_EQ(a.dim(1), b.dim(0));
#pragma once

#include <sstream>
#include <string>

namespace rotor {

// Where a call came from, as a default argument captures it:
//   void f(SourceLocation where = SourceLocation::current());
// (std::source_location where the compiler has it; clang 14 with libstdc++
// does not, while these builtins work in GCC and clang alike).
struct SourceLocation {
  const char* file = "";
  int line = 0;
  const char* function = "";
  static constexpr SourceLocation current(const char* file = __builtin_FILE(), int line = __builtin_LINE(),
                                          const char* function = __builtin_FUNCTION()) {
    return {file, line, function};
  }
};

// Collects the streamed message and aborts in its destructor.
class CheckFailure {
 public:
  CheckFailure(const char* file, int line, const char* statement);
  [[noreturn]] ~CheckFailure();
  std::ostream& stream() { return message_; }

 private:
  const char* file_;
  int line_;
  const char* statement_;
  std::ostringstream message_;
};

// Lets `ROTOR_CHECK(c) << ...` be a single expression of type void.
struct CheckVoidify {
  void operator&(std::ostream&) {}
};

}  // namespace rotor

#define ROTOR_CHECK(cond)                         \
  (cond) ? (void)0                                \
         : ::rotor::CheckVoidify() &              \
               ::rotor::CheckFailure(__FILE__, __LINE__, #cond).stream()

#define ROTOR_CHECK_OP(a, op, b) \
  ROTOR_CHECK((a)op(b)) << "(" << (a) << " vs " << (b) << ") "
#define ROTOR_CHECK_EQ(a, b) ROTOR_CHECK_OP(a, ==, b)
#define ROTOR_CHECK_NE(a, b) ROTOR_CHECK_OP(a, !=, b)
#define ROTOR_CHECK_LT(a, b) ROTOR_CHECK_OP(a, <, b)
#define ROTOR_CHECK_LE(a, b) ROTOR_CHECK_OP(a, <=, b)
#define ROTOR_CHECK_GT(a, b) ROTOR_CHECK_OP(a, >, b)
#define ROTOR_CHECK_GE(a, b) ROTOR_CHECK_OP(a, >=, b)
