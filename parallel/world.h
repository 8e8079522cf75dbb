// The world of this process: the MPI world when a launcher started it
// (mpirun/mpiexec of Open MPI, or srun/any PMI or PMIx launcher), else a
// one-rank local world, so `rotor train` alone needs no MPI runtime at all.
//
//   ProcessWorld w;                 // MPI_Init_thread here when launched by MPI
//   train(recipe, out, w.comm());
//                                   // ~ProcessWorld: MPI_Finalize
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "kernels/tensor.h"
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

  // Makes the world fit the training device, before any layout is built on
  // it: cpu and sim keep it (MPI moves host and sim memory); cuda selects
  // this rank's GPU (select_cuda_device: node-local rank -> device, one rank
  // per GPU checked by UUID) and, under MPI, replaces the world by the NCCL
  // world over it, so that every communicator split from it (each grid axis)
  // is an NCCL one. A one-process world stays local (its collectives are
  // copies, which work on any device). Errors: no usable GPU (with the CUDA
  // runtime's reason), a build without NCCL under MPI. ROTOR_ALLOW_GPU_SHARING
  // set (tests on a one-GPU machine): ranks share the node's GPUs round-robin
  // and the world stays MPI, since NCCL refuses two ranks on one GPU.
  absl::StatusOr<Device> use_device(DeviceType type);

 private:
  std::unique_ptr<Communicator> comm_;
  bool mpi_ = false;
};

}  // namespace rotor
