#include "parallel/world.h"

#include <cstdlib>

#include "parallel/mpi_communicator.h"

namespace rotor {

bool launched_by_mpi() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK"})
    if (std::getenv(var) != nullptr) return true;
  return false;
}

ProcessWorld::ProcessWorld() : mpi_(launched_by_mpi()) {
  comm_ = mpi_ ? mpi_world(nullptr, nullptr) : make_local_communicator("world");
}

ProcessWorld::~ProcessWorld() {
  comm_.reset();
  if (mpi_) mpi_finalize();
}

}  // namespace rotor
