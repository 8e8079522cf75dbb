// `rotor sweep RECIPE [--set KEY=VALUE ...] [--run]`: the runs of a recipe's
// `sweep:` grid (trainer/recipe/recipe.h, expand_sweep).
//
// Without --run it prints one line per run, first axis slowest:
//   <name>\t<run dir>\t<key>=<value> ...
// and nothing else on stdout (a header goes to stderr), so scripts can read
// it. Every run of the grid is validated first; an invalid combination is an
// error before anything trains.
//
// With --run the runs train one after another, each in its own run directory
// (<run.dir>/<name>), through the same train() as `rotor train`. A run whose
// directory already holds a checkpoint resumes (a finished run does nothing),
// so re-running a stopped sweep continues it. A failed run is reported and the
// sweep goes on with the next one; the exit status is then 1.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace rotor {

int run_sweep_command(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace rotor
