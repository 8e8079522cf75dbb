// Command-line words of the rotor subcommands: "--name VALUE", "--name=VALUE",
// flags, and positional words. One parser of option words for every command.
//
//   for (size_t i = 0; i < args.size(); ++i) {
//     const OptionWord w = split_option(args[i]);
//     if (w.name == "--out") { absl::StatusOr<std::string> v = option_value(w, args, i); ... }
//   }
#pragma once

#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace rotor {

// "-x" or "--x..." (but not "-" alone).
bool is_option(const std::string& word);

struct OptionWord {
  std::string name;                         // "--out" (the whole word when not an option)
  std::optional<std::string> inline_value;  // "X" of "--out=X"
};
OptionWord split_option(const std::string& word);

// The value of option `w` read at args[i]: its inline value, or the next word
// (then i advances). Error "NAME needs a value" when there is none, or it is
// empty, or the next word is another option.
absl::StatusOr<std::string> option_value(const OptionWord& w, const std::vector<std::string>& args,
                                         size_t& i);

// "--help" or "-h" anywhere among the words: the command prints its usage and exits 0.
bool asks_for_help(const std::vector<std::string>& args);

// The exit status of a command that failed with `s`: 2 for usage and input
// errors (kInvalidArgument, kNotFound, kFailedPrecondition, and the codes a
// command adds in `also_input`, e.g. kAlreadyExists for an output directory
// in the way), 1 for everything else.
int exit_status(const absl::Status& s, std::initializer_list<absl::StatusCode> also_input = {});

// A size in bytes, > 0, for the options that take one (--memory, --max-shard-size):
// "80GB", "141 GB", "1.5TB", "500MB", "100kb", "16GiB", "10B" or plain bytes;
// decimal units as Hugging Face (GB = 1e9), binary ones with "i" (GiB = 2^30).
// InvalidArgument naming `option` otherwise.
absl::StatusOr<int64_t> parse_byte_size(const std::string& text, const std::string& option);

}  // namespace rotor
