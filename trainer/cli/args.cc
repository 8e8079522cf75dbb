#include "trainer/cli/args.h"

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

}  // namespace rotor
