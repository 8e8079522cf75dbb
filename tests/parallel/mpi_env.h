// The world communicator of parallel_mpi_test (made by mpi_main.cc before the
// tests run; every test is collective over it, in the same order on every rank).
#pragma once

#include "parallel/communicator.h"

namespace rotor::testing_mpi {
Communicator& world();
}  // namespace rotor::testing_mpi
