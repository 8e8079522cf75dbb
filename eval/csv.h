// The CSV dialect of rotor's eval outputs (ppl.csv, passkey.csv,
// needle.csv, attention.csv, report CSVs), RFC 4180: a field holding a comma,
// a double quote or a newline is written in double quotes, with each double
// quote inside doubled; other fields are written as they are.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace rotor::eval {

// `text` as one CSV field.
std::string csv_field(const std::string& text);
// One CSV line split into fields ("a,\"b,c\"" -> a | b,c). InvalidArgument
// for an unterminated quoted field.
absl::StatusOr<std::vector<std::string>> split_csv_line(const std::string& line);

}  // namespace rotor::eval
