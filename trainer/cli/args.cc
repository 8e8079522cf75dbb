#include "trainer/cli/args.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace rotor {

bool is_option(const std::string& word) { return word.size() > 1 && word[0] == '-'; }

OptionWord split_option(const std::string& word) {
  OptionWord w{word, std::nullopt};
  if (const size_t eq = word.find('='); absl::StartsWith(word, "--") && eq != std::string::npos) {
    w.name = word.substr(0, eq);
    w.inline_value = word.substr(eq + 1);
  }
  return w;
}

absl::StatusOr<std::string> option_value(const OptionWord& w, const std::vector<std::string>& args,
                                         size_t& i) {
  if (w.inline_value) {
    if (w.inline_value->empty()) return absl::InvalidArgumentError(absl::StrCat(w.name, " needs a value"));
    return *w.inline_value;
  }
  if (i + 1 >= args.size() || is_option(args[i + 1])) {
    return absl::InvalidArgumentError(absl::StrCat(w.name, " needs a value"));
  }
  return args[++i];
}

bool asks_for_help(const std::vector<std::string>& args) {
  for (const std::string& a : args)
    if (a == "--help" || a == "-h") return true;
  return false;
}

int exit_status(const absl::Status& s, std::initializer_list<absl::StatusCode> also_input) {
  switch (s.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kFailedPrecondition:
      return 2;
    default:
      for (absl::StatusCode c : also_input)
        if (s.code() == c) return 2;
      return 1;
  }
}

absl::StatusOr<int64_t> parse_byte_size(const std::string& text, const std::string& option) {
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
  const std::string number = text.substr(0, i);
  std::string unit = text.substr(i);
  unit.erase(std::remove(unit.begin(), unit.end(), ' '), unit.end());
  for (char& ch : unit) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  static const std::pair<const char*, double> kUnits[] = {
      {"", 1},      {"B", 1},          {"KB", 1e3},          {"MB", 1e6},          {"GB", 1e9},
      {"TB", 1e12}, {"KIB", 1024.0},   {"MIB", 1048576.0},   {"GIB", 1073741824.0}, {"TIB", 1099511627776.0}};
  char* end = nullptr;
  const double value = number.empty() ? 0 : std::strtod(number.c_str(), &end);
  if (!number.empty() && end == number.c_str() + number.size())
    for (const auto& [name, scale] : kUnits)
      if (unit == name) {
        if (value * scale < 1) return absl::InvalidArgumentError(absl::StrCat(option, " must be > 0, got '", text, "'"));
        return static_cast<int64_t>(value * scale);
      }
  return absl::InvalidArgumentError(absl::StrCat(option, ": expected a memory size such as 80GB, 500MB or 16GiB ",
                                                 "(B, KB, MB, GB, TB, KiB, MiB, GiB, TiB), got '", text, "'"));
}

}  // namespace rotor
