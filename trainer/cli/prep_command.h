// `rotor prep`: tokenizes text or JSONL into a Megatron indexed dataset
// (data/prep.h):
//
//   rotor prep --tokenizer {spm:PATH|bytes} --input FILE... --output PREFIX
//              [--jsonl-key KEY]
//
// --input takes every following word up to the next option and may be
// repeated. Plain-text inputs are one document each; inputs ending in .jsonl
// (or every input, when --jsonl-key is given) are one document per line, the
// string under KEY (default "text"). Writes PREFIX.bin and PREFIX.idx; progress
// and a summary go to stderr. Errors are printed as "rotor prep: MESSAGE" on
// stderr with exit status 2.
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "data/prep.h"

namespace rotor {

// Parses the words after "prep". Errors: an unknown option, a missing value,
// no --tokenizer, no --input, no --output.
absl::StatusOr<PrepOptions> parse_prep_args(const std::vector<std::string>& args);

// Runs `rotor prep` with `args`: usage (--help) to `out`, progress, summary and
// errors to `err`. Returns the exit status: 0, or 2 on error.
int run_prep_command(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace rotor
