#include "trainer/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "kernels/elementwise.h"
#include "parallel/tensor_parallel.h"
#include "trainer/safetensors.h"
#include "kernels/status.h"

namespace rotor {

namespace fs = std::filesystem;

namespace {

constexpr const char* kModelFile = "model.safetensors";
constexpr const char* kOptimizerFile = "optimizer.safetensors";
constexpr const char* kRecipeFile = "recipe.yaml";
constexpr const char* kStateFile = "state.json";

std::string step_dir_name(int64_t step) { return absl::StrFormat("step_%08d", step); }

// CRC-32 (zlib) of a whole file, read in 1 MiB blocks.
absl::StatusOr<uint32_t> file_crc32(const fs::path& path, uint64_t* bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path.string(), ": cannot open"));
  std::vector<char> buf(1 << 20);
  uLong crc = crc32(0L, Z_NULL, 0);
  *bytes = 0;
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const std::streamsize got = in.gcount();
    if (got <= 0) break;
    crc = crc32(crc, reinterpret_cast<const Bytef*>(buf.data()), static_cast<uInt>(got));
    *bytes += static_cast<uint64_t>(got);
  }
  return static_cast<uint32_t>(crc);
}

}  // namespace

absl::Status write_text(const fs::path& path, const std::string& text) {
  errno = 0;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.flush();
  if (!out) {
    return absl::DataLossError(absl::StrCat(path.string(), ": write failed",
                                            errno ? absl::StrCat(" (", std::strerror(errno), ")") : ""));
  }
  return absl::OkStatus();
}

namespace {

// Forces `path` (a file or a directory: its entries) to stable storage, so a
// checkpoint that `latest` names survives a machine crash, not only a killed
// process. fsync through a read-only descriptor is enough on Linux.
absl::Status sync_path(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::DataLossError(absl::StrCat(path.string(), ": open for fsync: ", std::strerror(errno)));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return absl::DataLossError(absl::StrCat(path.string(), ": fsync: ", std::strerror(err)));
  return absl::OkStatus();
}

// step_<8 digits> exactly: not a .tmp-<pid> directory of a save in progress.
bool is_step_dir_name(const std::string& name) {
  return name.size() == 13 && name.rfind("step_", 0) == 0 &&
         std::all_of(name.begin() + 5, name.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Removes checkpoint directory `dir` so that a kill in the middle never
// leaves a step_<N> directory with some files gone: renamed first to a
// .tmp- name (which the next save clears away), then deleted.
void remove_checkpoint_dir(const fs::path& dir) {
  std::error_code ec;
  const fs::path doomed = dir.parent_path() / absl::StrCat(dir.filename().string(), ".tmp-removing-", getpid());
  fs::rename(dir, doomed, ec);
  const fs::path& gone = ec ? dir : doomed;  // rename failed: delete in place
  fs::remove_all(gone, ec);
}

std::vector<fs::path> complete_checkpoints(const fs::path& root) {
  std::vector<fs::path> dirs;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    if (e.is_directory() && is_step_dir_name(e.path().filename().string())) dirs.push_back(e.path());
  }
  std::sort(dirs.begin(), dirs.end());
  return dirs;
}

// The first tensor holding a NaN or inf, or "".
std::string first_nonfinite(const std::vector<NamedTensor>& tensors) {
  for (const NamedTensor& t : tensors)
    if (!std::isfinite(squared_norm(t.tensor))) return t.name;
  return "";
}

}  // namespace

std::string checkpoint_dir(const std::string& run_dir, int64_t step) {
  return (fs::path(run_dir) / "checkpoints" / step_dir_name(step)).string();
}

int64_t checkpoint_dir_step(const std::string& dir) {
  const std::string name = fs::path(dir).filename().string();
  return is_step_dir_name(name) ? std::stoll(name.substr(5)) : -1;
}

std::vector<std::string> resume_candidates(const std::string& run_dir) {
  std::vector<std::string> out;
  for (const fs::path& d : complete_checkpoints(fs::path(run_dir) / "checkpoints")) out.push_back(d.string());
  std::reverse(out.begin(), out.end());
  return out;
}

CheckpointTensors checkpoint_tensors(const std::vector<Parameter>& params,
                                     const AdamWOptimizer& optimizer, Communicator* tp) {
  CheckpointTensors t;
  t.optimizer_steps = optimizer.steps_taken();
  for (size_t i = 0; i < params.size(); ++i) {
    const int dim = params[i].shard_dim, rep = params[i].tp_replicas;
    t.model.push_back({params[i].name, tp_gather_whole(tp, params[i].value, dim, rep)});
    t.optimizer.push_back({"m." + params[i].name, tp_gather_whole(tp, optimizer.first_moment(i), dim, rep)});
    t.optimizer.push_back({"v." + params[i].name, tp_gather_whole(tp, optimizer.second_moment(i), dim, rep)});
  }
  return t;
}

absl::Status save_checkpoint(const std::string& run_dir, const CheckpointInfo& info,
                             const std::vector<Parameter>& params,
                             const AdamWOptimizer& optimizer, int keep) {
  return save_checkpoint(run_dir, info, checkpoint_tensors(params, optimizer), keep);
}

namespace {

// Writes every file of the checkpoint into `tmp` and fsyncs them; `stage`
// is called after each step of the write (CheckpointInfo::after_stage).
absl::Status write_checkpoint_files(const fs::path& tmp, const CheckpointInfo& info,
                                    const CheckpointTensors& tensors,
                                    const std::function<void(int)>& stage) {
  const std::map<std::string, std::string> meta = {{"step", std::to_string(info.step)}};
  ROTOR_RETURN_IF_ERROR(write_safetensors((tmp / kModelFile).string(), tensors.model, meta));
  stage(1);
  if (auto s = write_safetensors((tmp / kOptimizerFile).string(), tensors.optimizer, meta); !s.ok())
    return s;
  stage(2);
  ROTOR_RETURN_IF_ERROR(write_text(tmp / kRecipeFile, info.recipe_yaml));
  std::vector<std::string> files = {kModelFile, kOptimizerFile, kRecipeFile};
  std::error_code ec;
  for (const auto& [file, source] : info.extra_files) {
    fs::copy_file(source, tmp / file, fs::copy_options::overwrite_existing, ec);
    if (ec) return absl::NotFoundError(absl::StrCat("copy ", source, " into the checkpoint: ", ec.message()));
    files.push_back(file);
  }
  nlohmann::json state;
  state["step"] = info.step;
  state["optimizer_steps"] = tensors.optimizer_steps;
  state["sampler"] = info.sampler;
  for (const std::string& f : files) {
    uint64_t bytes = 0;
    ROTOR_ASSIGN_OR_RETURN(uint32_t crc, file_crc32(tmp / f, &bytes));
    state["files"][f] = {{"bytes", bytes}, {"crc32", crc}};
  }
  ROTOR_RETURN_IF_ERROR(write_text(tmp / kStateFile, state.dump(1)));
  files.push_back(kStateFile);
  for (const std::string& f : files)
    ROTOR_RETURN_IF_ERROR(sync_path(tmp / f));
  ROTOR_RETURN_IF_ERROR(sync_path(tmp));
  stage(3);
  return absl::OkStatus();
}

}  // namespace

absl::Status save_checkpoint(const std::string& run_dir, const CheckpointInfo& info,
                             const CheckpointTensors& tensors, int keep) {
  // Weights or moments with NaN or inf are never saved: resuming from them
  // could only reproduce the failure.
  for (const std::vector<NamedTensor>* set : {&tensors.model, &tensors.optimizer}) {
    if (const std::string bad = first_nonfinite(*set); !bad.empty()) {
      return absl::DataLossError(absl::StrCat("not saving the checkpoint of step ", info.step, ": ", bad,
                                              " holds NaN or inf"));
    }
  }
  const fs::path root = fs::path(run_dir) / "checkpoints";
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat(root.string(), ": ", ec.message()));
  // Leftovers of a save that was killed.
  for (const auto& e : fs::directory_iterator(root, ec))
    if (e.path().filename().string().find(".tmp-") != std::string::npos) fs::remove_all(e.path(), ec);

  const std::string name = step_dir_name(info.step);
  const fs::path tmp = root / absl::StrCat(name, ".tmp-", getpid());
  fs::create_directories(tmp, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat(tmp.string(), ": ", ec.message()));
  const std::function<void(int)> stage = info.after_stage ? info.after_stage : [](int) {};
  if (absl::Status s = write_checkpoint_files(tmp, info, tensors, stage); !s.ok()) {
    // A full disk or a write error: the partial directory goes (freeing its
    // space); the previous checkpoints and `latest` are untouched.
    fs::remove_all(tmp, ec);
    return absl::Status(s.code(), absl::StrCat("checkpoint of step ", info.step, " not saved (the previous ",
                                               "checkpoints are intact): ", s.message()));
  }

  const fs::path final_dir = root / name;
  if (fs::exists(final_dir)) remove_checkpoint_dir(final_dir);  // a rewrite of a step (resume past a corrupt one)
  fs::rename(tmp, final_dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("rename ", tmp.string(), ": ", ec.message()));
  ROTOR_RETURN_IF_ERROR(sync_path(root));
  stage(4);
  const fs::path latest_tmp = root / absl::StrCat("latest.tmp-", getpid());
  ROTOR_RETURN_IF_ERROR(write_text(latest_tmp, name + "\n"));
  ROTOR_RETURN_IF_ERROR(sync_path(latest_tmp));
  fs::rename(latest_tmp, root / "latest", ec);
  if (ec) return absl::InternalError(absl::StrCat("rename latest: ", ec.message()));
  ROTOR_RETURN_IF_ERROR(sync_path(root));

  if (keep > 0) {
    std::vector<fs::path> dirs = complete_checkpoints(root);
    for (size_t i = 0; i + static_cast<size_t>(keep) < dirs.size(); ++i) {
      if (dirs[i].filename() != name) remove_checkpoint_dir(dirs[i]);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> latest_checkpoint(const std::string& run_dir) {
  const fs::path root = fs::path(run_dir) / "checkpoints";
  std::ifstream in(root / "latest");
  if (!in) return std::string();
  std::string name;
  std::getline(in, name);
  const fs::path dir = root / name;
  if (name.empty() || !fs::is_directory(dir)) {
    return absl::DataLossError(absl::StrCat((root / "latest").string(), " names '", name,
                                            "', which is not a checkpoint directory"));
  }
  return dir.string();
}

namespace {

// Reads `name` into `dst`: directly when dst has the stored (global) shape,
// else the whole tensor and then tp rank `tp_rank`'s shard of it.
absl::Status read_param(const SafetensorsFile& file, const std::string& name, const Parameter& p,
                        const Tensor& dst, int tp_rank) {
  if (p.shard_dim < 0 || dst.shape() == p.global_shape) return file.read_into(name, dst);
  Tensor whole = Tensor::empty(p.global_shape, dst.dtype());
  ROTOR_RETURN_IF_ERROR(file.read_into(name, whole));
  const int shards = static_cast<int>(p.global_shape[p.shard_dim] / dst.dim(p.shard_dim));
  dst.copy_from(tp_shard_of(whole, p.shard_dim, shards, tp_rank / p.tp_replicas));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<CheckpointInfo> load_checkpoint(const std::string& dir,
                                               std::vector<Parameter>& params,
                                               AdamWOptimizer* optimizer, int tp_rank) {
  const fs::path d(dir);
  std::ifstream sf(d / kStateFile);
  if (!sf) return absl::NotFoundError(absl::StrCat((d / kStateFile).string(), ": missing"));
  nlohmann::json state = nlohmann::json::parse(sf, nullptr, false);
  const auto valid_state = [&] {
    if (state.is_discarded() || !state.is_object() || !state.contains("step") ||
        !state["step"].is_number_integer() || !state.contains("files") || !state["files"].is_object())
      return false;
    for (auto& [file, want] : state["files"].items()) {
      if (!want.is_object() || !want.contains("bytes") || !want["bytes"].is_number_unsigned() ||
          !want.contains("crc32") || !want["crc32"].is_number_unsigned() || file.find('/') != std::string::npos)
        return false;
    }
    return !state.contains("optimizer_steps") || state["optimizer_steps"].is_number_integer();
  };
  if (!valid_state()) {
    return absl::DataLossError(absl::StrCat((d / kStateFile).string(), ": not valid checkpoint state JSON"));
  }
  for (const char* required : {kModelFile, kOptimizerFile}) {
    if (!state["files"].contains(required)) {
      return absl::DataLossError(absl::StrCat((d / kStateFile).string(), ": lists no ", required));
    }
  }
  for (auto& [file, want] : state["files"].items()) {
    uint64_t bytes = 0;
    ROTOR_ASSIGN_OR_RETURN(uint32_t crc, file_crc32(d / file, &bytes));
    if (bytes != want["bytes"].get<uint64_t>() || crc != want["crc32"].get<uint64_t>()) {
      return absl::DataLossError(absl::StrCat(
          (d / file).string(), ": checksum mismatch (", bytes, " bytes, crc32 ", crc,
          "; state.json says ", want["bytes"].get<uint64_t>(), " bytes, crc32 ",
          want["crc32"].get<uint64_t>(), "): the file is truncated or corrupted"));
    }
  }
  ROTOR_ASSIGN_OR_RETURN(SafetensorsFile model, SafetensorsFile::open((d / kModelFile).string()));
  for (Parameter& p : params) {
    ROTOR_RETURN_IF_ERROR(read_param(model, p.name, p, p.value, tp_rank));
    if (p.working.defined()) p.working.copy_from(p.value);  // mixed precision: the bf16 copy
  }
  if (optimizer) {
    ROTOR_ASSIGN_OR_RETURN(SafetensorsFile opt, SafetensorsFile::open((d / kOptimizerFile).string()));
    for (size_t i = 0; i < params.size(); ++i) {
      if (auto s = read_param(opt, "m." + params[i].name, params[i], optimizer->first_moment(i), tp_rank);
          !s.ok())
        return s;
      if (auto s = read_param(opt, "v." + params[i].name, params[i], optimizer->second_moment(i), tp_rank);
          !s.ok())
        return s;
    }
    optimizer->restore_steps_taken(state.value("optimizer_steps", int64_t{0}));
  }
  CheckpointInfo info;
  info.step = state["step"].get<int64_t>();
  info.sampler = state.value("sampler", nlohmann::json());
  info.dir = dir;
  std::ifstream rf(d / kRecipeFile);
  std::stringstream ss;
  ss << rf.rdbuf();
  info.recipe_yaml = ss.str();
  return info;
}

}  // namespace rotor
