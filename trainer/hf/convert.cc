// Hugging Face export and import. See convert.h.
#include "trainer/hf/convert.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "model/llama.h"
#include "trainer/checkpoint.h"
#include "trainer/hf/config.h"
#include "trainer/hf/imported_recipe.h"
#include "trainer/hf/modeling_code.h"
#include "trainer/loading.h"
#include "trainer/safetensors.h"
#include "kernels/status.h"

namespace rotor {
namespace {

namespace fs = std::filesystem;

constexpr const char* kIndexFile = "model.safetensors.index.json";
constexpr const char* kSingleFile = "model.safetensors";

// A destination that must not exist or be an empty directory; created.
absl::Status prepare_empty_dir(const fs::path& dir) {
  std::error_code ec;
  if (fs::exists(dir, ec)) {
    if (!fs::is_directory(dir, ec)) {
      return absl::AlreadyExistsError(absl::StrCat(dir.string(), ": exists and is not a directory"));
    }
    if (!fs::is_empty(dir, ec)) {
      return absl::AlreadyExistsError(
          absl::StrCat(dir.string(), ": exists and is not empty (refusing to overwrite)"));
    }
    return absl::OkStatus();
  }
  fs::create_directories(dir, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat(dir.string(), ": ", ec.message()));
  return absl::OkStatus();
}

std::string shape_str(const std::vector<int64_t>& dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) absl::StrAppend(&s, i ? ", " : "", dims[i]);
  return s + "]";
}

// ---------------------------------------------------------------- export

// The HF model of a checkpoint's recipe: its model, rope and logit scalar,
// max_position_embeddings at least data.sequence_length.
HfModel export_model(const ScoringModel& m) {
  HfModel hf;
  hf.config = m.recipe.model;
  hf.rope = m.recipe.rope;
  hf.rope.sequence_length = 0;
  hf.logit_scale = m.recipe.logit_scale;
  hf.config.rope_theta = hf.rope.theta;
  hf.config.max_position_embeddings =
      std::max<int64_t>(hf.config.max_position_embeddings, m.recipe.proto.data().sequence_length());
  return hf;
}

// generation_config.json: bos/eos of the checkpoint's tokenizer when it has one.
nlohmann::json generation_config(const ScoringModel& m, const std::function<void(const std::string&)>& warn) {
  nlohmann::json gen = {{"_from_model_config", true}};
  if (absl::StatusOr<std::unique_ptr<Tokenizer>> tok = checkpoint_tokenizer(m); tok.ok()) {
    if ((*tok)->bos_id() >= 0) gen["bos_token_id"] = (*tok)->bos_id();
    if ((*tok)->eos_id() >= 0) gen["eos_token_id"] = (*tok)->eos_id();
  } else if (warn) {
    warn(absl::StrCat("no tokenizer (", tok.status().message(), "): generation_config.json has no bos/eos ids"));
  }
  return gen;
}

// The parameters in shards of at most `max_shard` bytes (`elem` bytes per
// value), in parameter order; `total` gets the bytes of all.
std::vector<std::vector<NamedTensor>> shard_parameters(const std::vector<Parameter>& params, uint64_t elem,
                                                       uint64_t max_shard, uint64_t& total) {
  std::vector<std::vector<NamedTensor>> shards;
  uint64_t in_shard = 0;
  total = 0;
  for (const Parameter& p : params) {
    const uint64_t bytes = static_cast<uint64_t>(p.value.numel()) * elem;
    if (shards.empty() || (in_shard > 0 && in_shard + bytes > max_shard)) {
      shards.emplace_back();
      in_shard = 0;
    }
    shards.back().push_back({p.name, p.value});  // the scoring model lives on the CPU
    in_shard += bytes;
    total += bytes;
  }
  return shards;
}

// model.safetensors, or the shards and model.safetensors.index.json.
absl::Status write_weights(const fs::path& dir, const std::vector<std::vector<NamedTensor>>& shards,
                           uint64_t total, SafetensorsFloat dtype) {
  const std::map<std::string, std::string> meta = {{"format", "pt"}};
  if (shards.size() == 1) return write_safetensors((dir / kSingleFile).string(), shards[0], meta, dtype);
  nlohmann::json index = {{"metadata", {{"total_size", total}}}, {"weight_map", nlohmann::json::object()}};
  for (size_t i = 0; i < shards.size(); ++i) {
    const std::string file = absl::StrFormat("model-%05d-of-%05d.safetensors", i + 1, shards.size());
    ROTOR_RETURN_IF_ERROR(write_safetensors((dir / file).string(), shards[i], meta, dtype));
    for (const NamedTensor& t : shards[i]) index["weight_map"][t.name] = file;
  }
  return write_text(dir / kIndexFile, index.dump(2) + "\n");
}

// ---------------------------------------------------------------- import

absl::StatusOr<nlohmann::json> read_json(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path.string(), ": missing"));
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {  // parse_error; out_of_range for a number overflow
    // e.what(): "[json.exception.parse_error.101] parse error at line 4, column 1: ..."
    std::string what = e.what();
    if (const size_t at = what.find("] "); at != std::string::npos) what = what.substr(at + 2);
    return absl::InvalidArgumentError(absl::StrCat(path.string(), ": not valid JSON: ", what));
  }
  if (!j.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path.string(), ": must be a JSON object, got ", j.type_name()));
  }
  return j;
}

// The safetensors files of an HF directory, open, and which holds each tensor.
struct HfWeights {
  std::map<std::string, std::string> where;  // tensor name -> file
  std::vector<std::string> files;            // in index order
  std::map<std::string, SafetensorsFile> open;
};

// The files model.safetensors.index.json names (and `where`), else model.safetensors.
absl::Status list_weight_files(const fs::path& src, const std::string& hf_dir, HfWeights& w) {
  std::error_code ec;
  const fs::path index_path = src / kIndexFile;
  if (!fs::exists(index_path, ec)) {
    if (!fs::exists(src / kSingleFile, ec)) {
      return absl::NotFoundError(
          absl::StrCat(hf_dir, ": neither ", kSingleFile, " nor ", kIndexFile, " (no weights)"));
    }
    w.files.push_back(kSingleFile);
    return absl::OkStatus();
  }
  ROTOR_ASSIGN_OR_RETURN(nlohmann::json index, read_json(index_path));
  if (!index.contains("weight_map") || !index["weight_map"].is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(index_path.string(), ": no \"weight_map\" object"));
  }
  std::set<std::string> seen;
  for (const auto& [name, file] : index["weight_map"].items()) {
    if (!file.is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(index_path.string(), ": weight_map[\"", name, "\"] is not a file name"));
    }
    const std::string f = file.get<std::string>();
    if (f.find('/') != std::string::npos || f == ".." || f.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(index_path.string(), ": weight_map[\"", name, "\"]: bad file name '", f, "'"));
    }
    w.where[name] = f;
    if (seen.insert(f).second) w.files.push_back(f);
  }
  return absl::OkStatus();
}

absl::StatusOr<HfWeights> open_weights(const fs::path& src, const std::string& hf_dir) {
  HfWeights w;
  ROTOR_RETURN_IF_ERROR(list_weight_files(src, hf_dir, w));
  std::error_code ec;
  for (const std::string& f : w.files) {
    if (!fs::exists(src / f, ec)) {
      return absl::NotFoundError(absl::StrCat((src / f).string(), ": missing (a shard named by ",
                                              kIndexFile, ")"));
    }
    absl::StatusOr<SafetensorsFile> st = SafetensorsFile::open((src / f).string());
    if (!st.ok()) return absl::InvalidArgumentError(st.status().message());
    if (w.where.empty() || w.files.size() == 1) {
      for (const SafetensorsEntry& e : st->entries()) w.where.emplace(e.name, f);
    }
    w.open.emplace(f, *std::move(st));
  }
  return w;
}

// Every tensor of the files must be a parameter of `params` (or ignorable).
absl::Status check_no_stray_tensors(const HfWeights& w, const std::vector<Parameter>& params, bool tied,
                                    const fs::path& src) {
  std::set<std::string> expected;
  for (const Parameter& p : params) expected.insert(p.name);
  for (const auto& [name, file] : w.where) {
    if (expected.count(name)) continue;
    if (absl::EndsWith(name, ".rotary_emb.inv_freq")) continue;
    if (name == "lm_head.weight" && tied) continue;
    return absl::InvalidArgumentError(
        absl::StrCat((src / file).string(), ": unexpected tensor '", name, "' (not part of a ",
                     tied ? "tied" : "untied", " rotor Llama)"));
  }
  return absl::OkStatus();
}

// Reads every parameter from the files (checking name, shape and dtype) into
// the checkpoint tensors, with zero AdamW moments.
absl::StatusOr<CheckpointTensors> read_parameters(const HfWeights& w, std::vector<Parameter>& params,
                                                  const fs::path& src, const std::string& hf_dir) {
  CheckpointTensors tensors;
  for (const Parameter& p : params) {
    auto it = w.where.find(p.name);
    if (it == w.where.end()) {
      return absl::InvalidArgumentError(absl::StrCat(hf_dir, ": tensor '", p.name, "' missing"));
    }
    const std::string file = (src / it->second).string();
    const SafetensorsFile& f = w.open.at(it->second);
    const SafetensorsEntry* e = f.find(p.name);
    if (e == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(file, ": tensor '", p.name, "' missing (", kIndexFile, " names this file)"));
    }
    const std::vector<int64_t> want = p.global_shape.vec();
    if (e->shape != want) {
      return absl::InvalidArgumentError(absl::StrCat(file, ": tensor '", p.name, "' has shape ",
                                                     shape_str(e->shape), ", expected ", shape_str(want)));
    }
    if (e->dtype != "F32" && e->dtype != "BF16" && e->dtype != "F16" && e->dtype != "F64") {
      return absl::InvalidArgumentError(
          absl::StrCat(file, ": tensor '", p.name, "' has dtype ", e->dtype, ", expected a float type"));
    }
    if (absl::Status s = f.read_into(p.name, p.value); !s.ok()) return absl::InvalidArgumentError(s.message());
    tensors.model.push_back({p.name, p.value});
    tensors.optimizer.push_back({"m." + p.name, Tensor::zeros(p.global_shape, DType::kF32)});
    tensors.optimizer.push_back({"v." + p.name, Tensor::zeros(p.global_shape, DType::kF32)});
  }
  return tensors;
}

// Saves `tensors` (step 0) as checkpoint directory `dst`: written into a
// scratch run directory next to it, then renamed into place.
absl::Status write_imported_checkpoint(const HfModel& hf, const fs::path& src, const std::string& hf_dir,
                                       const fs::path& dst, const CheckpointTensors& tensors) {
  ROTOR_RETURN_IF_ERROR(prepare_empty_dir(dst));
  std::error_code ec;
  const fs::path scratch = fs::path(dst.string() + absl::StrCat(".import-tmp-", getpid()));
  fs::remove_all(scratch, ec);
  fs::create_directories(scratch, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat(scratch.string(), ": ", ec.message()));
  auto cleanup = [&] { fs::remove_all(scratch, ec); };

  CheckpointInfo info;
  info.step = 0;
  info.sampler = nlohmann::json::object();
  std::string tokenizer;
  if (fs::exists(src / "tokenizer.model", ec)) {
    info.extra_files["tokenizer.model"] = (src / "tokenizer.model").string();
    tokenizer = absl::StrCat("spm:", fs::absolute(dst / "tokenizer.model", ec).string());
  }
  absl::StatusOr<std::string> yaml = imported_recipe(hf, hf_dir, tokenizer, scratch);
  if (!yaml.ok()) {
    cleanup();
    return yaml.status();
  }
  info.recipe_yaml = *yaml;
  const fs::path run = scratch / "run";
  if (absl::Status s = save_checkpoint(run.string(), info, tensors, 0); !s.ok()) {
    cleanup();
    return s;
  }
  fs::rename(run / "checkpoints" / "step_00000000", dst, ec);
  if (ec) {
    const std::string msg = ec.message();
    cleanup();
    return absl::InternalError(absl::StrCat("rename into ", dst.string(), ": ", msg));
  }
  cleanup();
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ExportSummary> export_hf(const ExportOptions& a,
                                        const std::function<void(const std::string&)>& warn) {
  ROTOR_ASSIGN_OR_RETURN(ScoringModel m, load_scoring_model(a.checkpoint, true));
  const HfModel hf = export_model(m);
  const bool f32 = a.dtype == "f32";
  absl::StatusOr<nlohmann::json> config =
      make_hf_config(hf, f32 ? "float32" : a.dtype == "f16" ? "float16" : "bfloat16");
  if (!config.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(m.dir, "/recipe.yaml: cannot export: ", config.status().message()));
  }
  const nlohmann::json gen = generation_config(m, warn);

  const fs::path dir(a.hf_dir);
  ROTOR_RETURN_IF_ERROR(prepare_empty_dir(dir));
  uint64_t total = 0;
  const std::vector<std::vector<NamedTensor>> shards =
      shard_parameters(m.model.parameters(), f32 ? 4 : 2, a.max_shard, total);
  const SafetensorsFloat dtype = f32                 ? SafetensorsFloat::kF32
                                 : a.dtype == "f16" ? SafetensorsFloat::kF16
                                                    : SafetensorsFloat::kBF16;
  ROTOR_RETURN_IF_ERROR(write_weights(dir, shards, total, dtype));
  if (a.modeling_code) {
    (*config)["auto_map"] = {{"AutoModelForCausalLM", kModelingRotorLlamaClass}};
    if (absl::Status s = write_text(dir / kModelingRotorLlamaFile, kModelingRotorLlamaPy); !s.ok())
      return s;
  }
  ROTOR_RETURN_IF_ERROR(write_text(dir / "config.json", config->dump(2) + "\n"));
  ROTOR_RETURN_IF_ERROR(write_text(dir / "generation_config.json", gen.dump(2) + "\n"));
  std::error_code ec;
  const fs::path spm = fs::path(m.dir) / "tokenizer.model";
  if (fs::exists(spm, ec)) {
    fs::copy_file(spm, dir / "tokenizer.model", fs::copy_options::overwrite_existing, ec);
    if (ec) return absl::DataLossError(absl::StrCat("copy ", spm.string(), ": ", ec.message()));
  }
  return ExportSummary{.checkpoint = m.dir,
                       .step = m.step,
                       .tensors = m.model.parameters().size(),
                       .bytes = total,
                       .files = shards.size(),
                       .logit_scale = hf.logit_scale.kind};
}

absl::StatusOr<ImportSummary> import_hf(const std::string& hf_dir, const std::string& ckpt_dir) {
  const fs::path src(hf_dir);
  std::error_code ec;
  if (!fs::is_directory(src, ec)) return absl::NotFoundError(absl::StrCat(hf_dir, ": no such directory"));
  const fs::path config_path = src / "config.json";
  ROTOR_ASSIGN_OR_RETURN(nlohmann::json config, read_json(config_path));
  absl::StatusOr<HfModel> hf = parse_hf_config(config, config_path.string());
  if (!hf.ok()) return absl::InvalidArgumentError(hf.status().message());
  hf->config.rope_theta = hf->rope.theta;

  LlamaOptions options;
  options.rope = hf->rope;
  options.logit_scale = hf->logit_scale;
  absl::StatusOr<LlamaModel> model = LlamaModel::create(hf->config, options);
  if (!model.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(config_path.string(), ": ", model.status().message()));
  }
  ROTOR_ASSIGN_OR_RETURN(HfWeights weights, open_weights(src, hf_dir));
  std::vector<Parameter>& params = model->parameters();
  if (absl::Status s = check_no_stray_tensors(weights, params, hf->config.tie_word_embeddings, src); !s.ok()) {
    return s;
  }
  absl::StatusOr<CheckpointTensors> tensors = read_parameters(weights, params, src, hf_dir);
  if (!tensors.ok()) return tensors.status();
  if (absl::Status s = write_imported_checkpoint(*hf, src, hf_dir, fs::path(ckpt_dir), *tensors); !s.ok()) {
    return s;
  }
  return ImportSummary{
      .tensors = params.size(), .parameters = hf->config.num_parameters(), .rope = hf->rope.method};
}

}  // namespace rotor
