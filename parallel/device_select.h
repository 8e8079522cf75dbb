// Which GPU a rank uses, and the check that no two ranks of a node share one.
// Pure C++ (no CUDA, no MPI): the decisions are functions of strings and
// numbers, so they are unit-tested on the CPU (tests/parallel/device_select_test.cc).
// The MPI/CUDA side that feeds them (cudaGetDeviceCount, the device UUIDs, the
// all-gather over the world) is select_cuda_device() in
// parallel/nccl_communicator.h.
//
// The rule, as torchrun / Megatron / NCCL's own examples use it: rank r of a
// node takes visible device r (device = local rank), where "visible" is after
// CUDA_VISIBLE_DEVICES, which the CUDA runtime applies before we count. One
// exception: when a launcher binds one GPU per rank (Slurm --gpus-per-task=1,
// --gpu-bind=single:1, a wrapper script setting CUDA_VISIBLE_DEVICES per rank)
// each rank sees exactly one device, and every rank takes device 0; the
// uniqueness check (by GPU UUID, after the all-gather) then catches a launcher
// that gave several ranks the same GPU.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace rotor {

struct LocalRank {
  int rank = -1;        // this process's index among the ranks of its node; -1: unknown
  std::string source;   // the environment variable it came from ("" when unknown)
};

// The node-local rank from the launcher's environment, the first of these that
// is set (non-empty), in this order:
//   OMPI_COMM_WORLD_LOCAL_RANK  OpenMPI's mpirun (also under Slurm when started by mpirun)
//   SLURM_LOCALID               srun (set for every task, with or without MPI)
//   MPI_LOCALRANKID             MPICH / Intel MPI (Hydra)
//   LOCAL_RANK                  torchrun-style launchers and hand-written wrappers
// mpirun first: under `salloc ... mpirun` both OpenMPI's and Slurm's variables
// are set, and SLURM_LOCALID then describes the allocation's one task, not the
// MPI rank. None set: {-1, ""} (the caller falls back to MPI's shared-memory
// split, MPI_Comm_split_type). A variable that is set to something other than a
// non-negative integer is an error naming it. `getenv` is for tests.
absl::StatusOr<LocalRank> local_rank_from_env(
    const std::function<const char*(const char*)>& getenv = nullptr);

// CUDA_VISIBLE_DEVICES split at commas, entries trimmed ("0,1" -> {"0", "1"};
// "" -> {}). UUIDs ("GPU-8f3c...") and MIG ids are kept as text.
std::vector<std::string> parse_visible_devices(std::string_view cuda_visible_devices);

// The CUDA device index (as the runtime numbers them, after CUDA_VISIBLE_DEVICES)
// for the rank `local_rank` of a node with `local_size` ranks (-1: unknown)
// that sees `device_count` devices. `cuda_visible_devices` is the variable's
// value, or nullptr when unset (used in messages and to tell "hidden by
// CUDA_VISIBLE_DEVICES" from "no GPU"). Errors:
//   no device visible;
//   more ranks on the node than devices ("8 ranks per node, 4 GPUs visible ...").
absl::StatusOr<int> choose_device(int local_rank, int device_count,
                                  const char* cuda_visible_devices, int local_size = -1);

// One rank's device, as gathered over the world.
struct RankDevice {
  int world_rank = 0;
  std::string host;       // gethostname()
  std::string device_id;  // the GPU's UUID ("GPU-...") or PCI bus id; globally meaningful with host
  int device_index = 0;   // the CUDA device index the rank chose (for messages)
};

// OK when no two entries have the same (host, device_id); else an error naming
// the first pair found: "world ranks 0 and 4 on host n1 both use GPU GPU-1a2b
// (cuda:0 on both): ...".
absl::Status check_unique_devices(const std::vector<RankDevice>& ranks);

}  // namespace rotor
