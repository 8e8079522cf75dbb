// The CSV dialect of rotor's eval outputs (ppl.csv, passkey.csv,
// needle.csv, attention.csv, report CSVs), RFC 4180: a field holding a comma,
// a double quote or a newline is written in double quotes, with each double
// quote inside doubled; other fields are written as they are.
#pragma once

#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace rotor::eval {

// `text` as one CSV field.
std::string csv_field(const std::string& text);
// One CSV line split into fields ("a,\"b,c\"" -> a | b,c). InvalidArgument
// for an unterminated quoted field.
absl::StatusOr<std::vector<std::string>> split_csv_line(const std::string& line);

// <dir>/<name> opened for writing (truncated), `dir` created first, with
// `header` and a newline written. PermissionDenied "<dir>/<name>: cannot open
// for writing".
absl::StatusOr<std::ofstream> open_csv(const std::string& dir, const std::string& name,
                                       std::string_view header);

}  // namespace rotor::eval
