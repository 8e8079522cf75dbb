// `rotor rope`: prints what a recipe's RoPE and logit-scale sections mean as
// numbers, without building a model:
//
//   rotor rope [RECIPE.yaml] [--set KEY=VALUE ...] [--positions P1,P2,...] [--layers N]
//
// The JSON object, the keys and the defaults are those of
// trainer/recipe/rope_settings.h. Errors name the key (and for a recipe file,
// FILE:LINE:COLUMN); the command prints them as "rotor rope: MESSAGE" on
// stderr and exits with status 2.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace rotor {

// Runs `rotor rope` with `args` (the words after "rope"): JSON to `out`, usage
// (--help) to `out`, errors to `err`. Returns the exit status: 0, or 2 on error.
int run_rope_command(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace rotor
