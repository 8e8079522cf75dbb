#include "parallel/device_select.h"

#include <cstdlib>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"

namespace rotor {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// A non-negative int, the whole string; -1 otherwise.
int parse_non_negative(std::string_view s) {
  s = trim(s);
  if (s.empty() || s.size() > 9) return -1;
  int v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return -1;
    v = v * 10 + (c - '0');
  }
  return v;
}

std::string describe_visible(const char* visible) {
  if (visible == nullptr) return "CUDA_VISIBLE_DEVICES unset";
  return absl::StrCat("CUDA_VISIBLE_DEVICES='", visible, "'");
}

}  // namespace

absl::StatusOr<LocalRank> local_rank_from_env(
    const std::function<const char*(const char*)>& getenv) {
  static constexpr const char* kVars[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID",
                                          "MPI_LOCALRANKID", "LOCAL_RANK"};
  for (const char* name : kVars) {
    const char* v = getenv ? getenv(name) : std::getenv(name);
    if (v == nullptr || *v == '\0') continue;
    const int r = parse_non_negative(v);
    if (r < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, "='", v, "' is not a node-local rank (a non-negative integer)"));
    }
    return LocalRank{r, name};
  }
  return LocalRank{};
}

std::vector<std::string> parse_visible_devices(std::string_view s) {
  std::vector<std::string> out;
  if (trim(s).empty()) return out;
  size_t start = 0;
  for (;;) {
    const size_t comma = s.find(',', start);
    const std::string_view item =
        trim(s.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start));
    out.emplace_back(item);
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return out;
}

absl::StatusOr<int> choose_device(int local_rank, int device_count,
                                  const char* cuda_visible_devices, int local_size) {
  if (local_rank < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("node-local rank ", local_rank, " is negative (no launcher variable and "
                                                     "no MPI shared-memory split?)"));
  }
  if (device_count <= 0) {
    if (cuda_visible_devices != nullptr) {
      const std::string v = cuda_visible_devices;
      if (parse_visible_devices(v).empty() || v == "NoDevFiles" || v == "-1") {
        return absl::FailedPreconditionError(absl::StrCat(
            "no CUDA device visible: ", describe_visible(cuda_visible_devices),
            " hides every GPU (Slurm sets NoDevFiles when the job asked for no GPUs: add "
            "--gpus-per-node or --gres=gpu:N)"));
      }
    }
    return absl::FailedPreconditionError(absl::StrCat(
        "no CUDA device visible (", describe_visible(cuda_visible_devices),
        "): no GPU or no driver on this node; rotor needs one GPU per rank with NCCL"));
  }
  if (local_rank < device_count) return local_rank;
  // One device visible to a rank of index >= 1: the launcher bound one GPU per
  // rank (see the header). Uniqueness is checked after the all-gather.
  if (device_count == 1) return 0;
  const std::string ranks =
      local_size > 0 ? absl::StrCat(local_size, " ranks per node")
                     : absl::StrCat("at least ", local_rank + 1, " ranks per node");
  return absl::FailedPreconditionError(absl::StrCat(
      "node-local rank ", local_rank, " has no GPU of its own: ", ranks, ", ", device_count,
      " GPUs visible (", describe_visible(cuda_visible_devices),
      "); start at most ", device_count,
      " ranks per node (mpirun --map-by ppr:", device_count, ":node, srun --ntasks-per-node=",
      device_count, ") or make more GPUs visible"));
}

absl::Status check_unique_devices(const std::vector<RankDevice>& ranks) {
  std::map<std::pair<std::string, std::string>, const RankDevice*> seen;
  for (const RankDevice& r : ranks) {
    auto [it, inserted] = seen.emplace(std::make_pair(r.host, r.device_id), &r);
    if (inserted) continue;
    const RankDevice& a = *it->second;
    return absl::FailedPreconditionError(absl::StrCat(
        "world ranks ", a.world_rank, " and ", r.world_rank, " on host ", r.host,
        " both use GPU ", r.device_id, " (cuda:", a.device_index, " and cuda:", r.device_index,
        " in their numbering): each rank needs a GPU of its own (NCCL hangs or fails when "
        "two ranks of one communicator share a device); check CUDA_VISIBLE_DEVICES and the "
        "number of ranks per node"));
  }
  return absl::OkStatus();
}

}  // namespace rotor
