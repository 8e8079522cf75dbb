#include "parallel/world.h"

#include <algorithm>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "kernels/device.h"
#include "parallel/device_select.h"
#include "parallel/mpi_communicator.h"
#ifdef ROTOR_WITH_NCCL
#include "parallel/nccl_communicator.h"
#endif

namespace rotor {

bool launched_by_mpi() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK"})
    if (std::getenv(var) != nullptr) return true;
  return false;
}

ProcessWorld::ProcessWorld() : mpi_(launched_by_mpi()) {
  comm_ = mpi_ ? mpi_world(nullptr, nullptr) : make_local_communicator("world");
}

absl::StatusOr<Device> ProcessWorld::use_device(DeviceType type) {
  if (type == DeviceType::kCpu) return Device::cpu();
  if (type == DeviceType::kSim) return Device::sim();
  if (cuda_device_count() == 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "device: cuda: ", cuda_unavailable_reason(),
        " (rotor trains on a GPU only when one is usable; device: cpu trains on the CPU)"));
  }
  if (mpi_ && std::getenv("ROTOR_ALLOW_GPU_SHARING") != nullptr) {
    // Tests on a one-GPU machine: every rank on the node takes GPU
    // local_rank % count and the world stays MPI (device tensors through host
    // copies), because NCCL refuses two ranks of a communicator on one GPU
    // ("Duplicate GPU detected", NCCL >= 2.5). Not for training runs.
    absl::StatusOr<LocalRank> local = local_rank_from_env();
    if (!local.ok()) return local.status();
    const int index = std::max(local->rank, 0) % cuda_device_count();
    if (!cuda_select_device(index)) return absl::InternalError(absl::StrCat("cudaSetDevice(", index, ") failed"));
    return Device::cuda(index);
  }
  if (!mpi_) {  // one process: the launcher's local rank (0 without one) picks the GPU
    absl::StatusOr<LocalRank> local = local_rank_from_env();
    if (!local.ok()) return local.status();
    absl::StatusOr<int> index =
        choose_device(local->rank < 0 ? 0 : local->rank, cuda_device_count(), std::getenv("CUDA_VISIBLE_DEVICES"));
    if (!index.ok()) return index.status();
    if (!cuda_select_device(*index)) return absl::InternalError(absl::StrCat("cudaSetDevice(", *index, ") failed"));
    return Device::cuda(*index);
  }
#ifdef ROTOR_WITH_NCCL
  const int index = select_cuda_device(*comm_);  // ends the job with the reason on failure
  comm_ = nccl_world(std::move(comm_), index);
  return Device::cuda(index);
#else
  return absl::FailedPreconditionError(
      "device: cuda under MPI needs NCCL, and this rotor was built without it (NCCL not found at build time)");
#endif
}

ProcessWorld::~ProcessWorld() {
  comm_.reset();
  if (mpi_) mpi_finalize();
}

}  // namespace rotor
