// The world of this process: the MPI world when a launcher started it
// (mpirun/mpiexec of Open MPI, or srun/any PMI or PMIx launcher), else a
// one-rank local world, so `rotor train` alone needs no MPI runtime at all.
//
//   ProcessWorld w;                 // MPI_Init_thread here when launched by MPI
//   train(recipe, out, w.comm());
//                                   // ~ProcessWorld: MPI_Finalize
#pragma once

#include <memory>

#include "parallel/communicator.h"

namespace rotor {

// True when the environment says an MPI launcher started this process
// (OMPI_COMM_WORLD_SIZE, PMIX_RANK or PMI_RANK is set).
bool launched_by_mpi();

class ProcessWorld {
 public:
  ProcessWorld();
  ~ProcessWorld();
  ProcessWorld(const ProcessWorld&) = delete;
  ProcessWorld& operator=(const ProcessWorld&) = delete;

  Communicator& comm() { return *comm_; }
  bool is_mpi() const { return mpi_; }

 private:
  std::unique_ptr<Communicator> comm_;
  bool mpi_ = false;
};

}  // namespace rotor
