// The status idioms of kernels/status.h.
#include "kernels/status.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace rotor {
namespace {

absl::Status fails_if(bool fail, int& calls) {
  ++calls;
  return fail ? absl::NotFoundError("missing") : absl::OkStatus();
}

absl::Status twice(bool fail_first, int& calls) {
  ROTOR_RETURN_IF_ERROR(fails_if(fail_first, calls));
  ROTOR_RETURN_IF_ERROR(fails_if(false, calls));
  return absl::OkStatus();
}

TEST(Status, ReturnIfErrorReturnsTheFirstErrorAndEvaluatesOnce) {
  int calls = 0;
  EXPECT_TRUE(twice(false, calls).ok());
  EXPECT_EQ(calls, 2);
  calls = 0;
  const absl::Status s = twice(true, calls);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "missing");
  EXPECT_EQ(calls, 1);
}

absl::StatusOr<std::unique_ptr<int>> make(int v) {
  if (v < 0) return absl::InvalidArgumentError("negative");
  return std::make_unique<int>(v);
}

absl::StatusOr<int> sum_of(int a, int b) {
  ROTOR_ASSIGN_OR_RETURN(std::unique_ptr<int> x, make(a));  // move-only values move
  ROTOR_ASSIGN_OR_RETURN(std::unique_ptr<int> y, make(b));
  return *x + *y;
}

TEST(Status, AssignOrReturnMovesTheValueOrReturnsTheError) {
  absl::StatusOr<int> ok = sum_of(2, 3);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(*ok, 5);
  absl::StatusOr<int> bad = sum_of(2, -1);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.status().message(), "negative");
}

TEST(Status, WithContextPrefixesTheMessageAndKeepsCodeAndPayload) {
  absl::Status s = absl::DataLossError("crc mismatch");
  s.SetPayload("rotor/file", absl::Cord("model.safetensors"));
  const absl::Status c = with_context(s, "checkpoints/step_00000004: ");
  EXPECT_EQ(c.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(c.message(), "checkpoints/step_00000004: crc mismatch");
  ASSERT_TRUE(c.GetPayload("rotor/file").has_value());
  EXPECT_EQ(std::string(*c.GetPayload("rotor/file")), "model.safetensors");
  EXPECT_TRUE(with_context(absl::OkStatus(), "x: ").ok());
}

}  // namespace
}  // namespace rotor
