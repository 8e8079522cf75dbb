// `rotor train RECIPE.yaml [--set KEY=VALUE ...]`: loads the recipe (with its
// overrides), reads ROTOR_FAULT (trainer/fault_injection.h) and runs train()
// (trainer/train.h) over the process world (parallel/world.h: MPI when a
// launcher started the process). Status 2 for usage and recipe errors, 1 when
// training fails (under mpirun every rank is then ended, the message naming
// the rank).
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace rotor {

int run_train_command(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace rotor
