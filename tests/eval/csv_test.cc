// The eval CSV dialect (eval/csv.h): fields that need quoting are quoted,
// others are not, and split_csv_line reads back what csv_field wrote.
#include "eval/csv.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace rotor::eval {
namespace {

TEST(Csv, QuotesOnlyWhatNeedsIt) {
  EXPECT_EQ(csv_field("demo_yarn"), "demo_yarn");
  EXPECT_EQ(csv_field(""), "");
  EXPECT_EQ(csv_field("runs/a,b"), "\"runs/a,b\"");
  EXPECT_EQ(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
}

TEST(Csv, SplitReadsBackWhatWasWritten) {
  const std::vector<std::string> fields = {"plain", "with,comma", "", "\"quoted\"", "a\"b", "1e-05"};
  std::string line;
  for (size_t i = 0; i < fields.size(); ++i) line += (i ? "," : "") + csv_field(fields[i]);
  absl::StatusOr<std::vector<std::string>> back = split_csv_line(line);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, fields) << line;
  EXPECT_FALSE(split_csv_line("a,\"open").ok());
}

}  // namespace
}  // namespace rotor::eval
