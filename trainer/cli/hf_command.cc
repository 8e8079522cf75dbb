// `rotor export-hf` / `rotor import-hf`. See hf_command.h.
#include "trainer/cli/hf_command.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <utility>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "model/llama.h"
#include "trainer/checkpoint.h"
#include "trainer/cli/args.h"
#include "trainer/hf/config.h"
#include "trainer/hf/modeling_code.h"
#include "trainer/recipe/convert.h"
#include "trainer/recipe/recipe.h"
#include "trainer/safetensors.h"
#include "trainer/loading.h"

namespace rotor {
namespace {

namespace fs = std::filesystem;

constexpr char kExportUsage[] =
    "usage: rotor export-hf CHECKPOINT_OR_RUN_DIR HF_DIR [--dtype bf16|f16|f32] [--max-shard-size 5GB]\n"
    "\n"
    "Writes a checkpoint as a Hugging Face LlamaForCausalLM directory: config.json,\n"
    "generation_config.json, model.safetensors (or model-0000i-of-0000N.safetensors shards\n"
    "and model.safetensors.index.json when larger than --max-shard-size) and tokenizer.model\n"
    "when the checkpoint has one. HF_DIR must not exist or be empty.\n"
    "  --dtype bf16|f16|f32     weight precision (default bf16; f16 refuses weights beyond 65504)\n"
    "  --max-shard-size SIZE    largest shard, decimal units as HF: 5GB, 500MB, 100KB (default 5GB)\n"
    "  --with-modeling-code     also write modeling_rotor_llama.py and config.json auto_map, so\n"
    "                           that AutoModelForCausalLM.from_pretrained(HF_DIR,\n"
    "                           trust_remote_code=True) applies the logit scalar (rotor_logit_scale)\n";

constexpr char kImportUsage[] =
    "usage: rotor import-hf HF_DIR CHECKPOINT_DIR\n"
    "\n"
    "Converts a Hugging Face Llama directory (config.json + model.safetensors or sharded\n"
    "safetensors with model.safetensors.index.json) into a rotor checkpoint directory (step 0,\n"
    "f32 weights, zero optimizer moments) usable by rotor score and model.init_from. Its\n"
    "recipe.yaml has the model, rope and logit_scale of config.json and placeholder data and\n"
    "train sections. CHECKPOINT_DIR must not exist or be empty.\n";

constexpr const char* kIndexFile = "model.safetensors.index.json";
constexpr const char* kSingleFile = "model.safetensors";


// A destination in the way (kAlreadyExists) is an input error too.
int exit_code(const absl::Status& s) {
  return exit_status(s, {absl::StatusCode::kAlreadyExists});
}


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

// ---------------------------------------------------------------- export-hf

struct ExportArgs {
  std::string checkpoint, hf_dir;
  std::string dtype = "bf16";
  uint64_t max_shard = 5'000'000'000ULL;
  bool modeling_code = false;
};

absl::StatusOr<ExportArgs> parse_export_args(const std::vector<std::string>& args) {
  ExportArgs a;
  std::vector<std::string> positional;
  bool have_dtype = false, have_shard = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const OptionWord word = split_option(args[i]);
    const std::string& name = word.name;
    const bool has_inline = word.inline_value.has_value();
    auto value = [&]() { return option_value(word, args, i); };
    if (name == "--dtype") {
      if (have_dtype) return absl::InvalidArgumentError("--dtype given twice");
      absl::StatusOr<std::string> v = value();
      if (!v.ok()) return v.status();
      if (*v != "bf16" && *v != "f16" && *v != "f32") {
        return absl::InvalidArgumentError(absl::StrCat("--dtype must be bf16, f16 or f32, got '", *v, "'"));
      }
      a.dtype = *v;
      have_dtype = true;
    } else if (name == "--max-shard-size") {
      if (have_shard) return absl::InvalidArgumentError("--max-shard-size given twice");
      absl::StatusOr<std::string> v = value();
      if (!v.ok()) return v.status();
      absl::StatusOr<uint64_t> n = parse_shard_size(*v);
      if (!n.ok()) return n.status();
      a.max_shard = *n;
      have_shard = true;
    } else if (name == "--with-modeling-code") {
      if (has_inline) return absl::InvalidArgumentError("--with-modeling-code takes no value");
      a.modeling_code = true;
    } else if (is_option(name)) {
      return absl::InvalidArgumentError(absl::StrCat("unknown option '", name, "'"));
    } else {
      positional.push_back(name);
    }
  }
  if (positional.size() != 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "expected CHECKPOINT_OR_RUN_DIR and HF_DIR, got ", positional.size(), " argument(s)"));
  }
  a.checkpoint = positional[0];
  a.hf_dir = positional[1];
  return a;
}

absl::Status export_hf(const ExportArgs& a, std::ostream& out, std::ostream& err) {
  absl::StatusOr<ScoringModel> m = load_scoring_model(a.checkpoint, true);
  if (!m.ok()) return m.status();
  const recipe::Recipe& proto = m->recipe.proto;

  HfModel hf;
  hf.config = m->recipe.model;
  hf.rope = m->recipe.rope;
  hf.rope.sequence_length = 0;
  hf.logit_scale = m->recipe.logit_scale;
  hf.config.rope_theta = hf.rope.theta;
  hf.config.max_position_embeddings =
      std::max<int64_t>(hf.config.max_position_embeddings, proto.data().sequence_length());
  const bool f32 = a.dtype == "f32";
  absl::StatusOr<nlohmann::json> config =
      make_hf_config(hf, f32 ? "float32" : a.dtype == "f16" ? "float16" : "bfloat16");
  if (!config.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(m->dir, "/recipe.yaml: cannot export: ", config.status().message()));
  }

  nlohmann::json gen = {{"_from_model_config", true}};
  if (absl::StatusOr<std::unique_ptr<Tokenizer>> tok = checkpoint_tokenizer(*m); tok.ok()) {
    if ((*tok)->bos_id() >= 0) gen["bos_token_id"] = (*tok)->bos_id();
    if ((*tok)->eos_id() >= 0) gen["eos_token_id"] = (*tok)->eos_id();
  } else {
    err << "rotor export-hf: warning: no tokenizer (" << tok.status().message()
        << "): generation_config.json has no bos/eos ids\n";
  }

  const fs::path dir(a.hf_dir);
  if (absl::Status s = prepare_empty_dir(dir); !s.ok()) return s;

  // Shards in parameter order.
  const uint64_t elem = f32 ? 4 : 2;
  std::vector<std::vector<NamedTensor>> shards;
  uint64_t in_shard = 0, total = 0;
  for (const Parameter& p : m->model.parameters()) {
    const uint64_t bytes = static_cast<uint64_t>(p.value.numel()) * elem;
    if (shards.empty() || (in_shard > 0 && in_shard + bytes > a.max_shard)) {
      shards.emplace_back();
      in_shard = 0;
    }
    shards.back().push_back({p.name, p.value});  // the scoring model lives on the CPU
    in_shard += bytes;
    total += bytes;
  }
  const std::map<std::string, std::string> meta = {{"format", "pt"}};
  const SafetensorsFloat dtype = f32                 ? SafetensorsFloat::kF32
                                 : a.dtype == "f16" ? SafetensorsFloat::kF16
                                                    : SafetensorsFloat::kBF16;
  if (shards.size() == 1) {
    if (absl::Status s = write_safetensors((dir / kSingleFile).string(), shards[0], meta, dtype); !s.ok())
      return s;
  } else {
    nlohmann::json index = {{"metadata", {{"total_size", total}}}, {"weight_map", nlohmann::json::object()}};
    for (size_t i = 0; i < shards.size(); ++i) {
      const std::string file = absl::StrFormat("model-%05d-of-%05d.safetensors", i + 1, shards.size());
      if (absl::Status s = write_safetensors((dir / file).string(), shards[i], meta, dtype); !s.ok())
        return s;
      for (const NamedTensor& t : shards[i]) index["weight_map"][t.name] = file;
    }
    if (absl::Status s = write_text(dir / kIndexFile, index.dump(2) + "\n"); !s.ok()) return s;
  }
  if (a.modeling_code) {
    (*config)["auto_map"] = {{"AutoModelForCausalLM", kModelingRotorLlamaClass}};
    if (absl::Status s = write_text(dir / kModelingRotorLlamaFile, kModelingRotorLlamaPy); !s.ok())
      return s;
  }
  if (absl::Status s = write_text(dir / "config.json", config->dump(2) + "\n"); !s.ok()) return s;
  if (absl::Status s = write_text(dir / "generation_config.json", gen.dump(2) + "\n"); !s.ok()) return s;
  std::error_code ec;
  const fs::path spm = fs::path(m->dir) / "tokenizer.model";
  if (fs::exists(spm, ec)) {
    fs::copy_file(spm, dir / "tokenizer.model", fs::copy_options::overwrite_existing, ec);
    if (ec) return absl::DataLossError(absl::StrCat("copy ", spm.string(), ": ", ec.message()));
  }
  if (hf.logit_scale.kind != LogitScaleKind::kNone) {
    err << "rotor export-hf: warning: the checkpoint uses a logit scalar (logit_scale.kind "
        << logit_scale_kind_name(hf.logit_scale.kind)
        << "), exported as config.json \"rotor_logit_scale\", which transformers has no key for. ";
    if (a.modeling_code) {
      err << "Load with trust_remote_code=True so that " << kModelingRotorLlamaFile
          << " applies it; without it the outputs differ from rotor's.\n";
    } else {
      err << "transformers ignores it, so the exported model's outputs differ from rotor's; "
             "--with-modeling-code writes modeling code that applies it (trust_remote_code).\n";
    }
  }
  out << "exported " << m->dir << " (step " << m->step << ") to " << a.hf_dir << ": "
      << m->model.parameters().size() << " tensors, " << total << " bytes of " << a.dtype
      << " in " << shards.size() << " file(s)\n";
  return absl::OkStatus();
}

// ---------------------------------------------------------------- import-hf

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

// The recipe.yaml of an imported checkpoint (resolved, validated by loading it).
absl::StatusOr<std::string> imported_recipe(const HfModel& hf, const std::string& hf_dir,
                                            const std::string& tokenizer, const fs::path& scratch) {
  recipe::Recipe r;
  const LlamaConfig& c = hf.config;
  set_model_section(c, *r.mutable_model());
  set_rope_section(hf.rope, *r.mutable_rope());
  set_logit_scale_section(hf.logit_scale, *r.mutable_logit_scale());
  auto* d = r.mutable_data();
  d->add_datasets()->set_path(absl::StrCat("(imported from ", hf_dir, ")"));
  d->set_sequence_length(c.max_position_embeddings);
  // Only a tokenizer the directory has: without one the recipe names none.
  if (!tokenizer.empty()) d->set_tokenizer(tokenizer);
  auto* t = r.mutable_train();
  t->set_steps(1);
  t->set_lr(1e-5);
  t->set_global_batch_size(1);
  const fs::path path = scratch / "recipe.yaml";
  if (absl::Status s = write_text(path, recipe_to_yaml(r)); !s.ok()) return s;
  absl::StatusOr<LoadedRecipe> loaded = load_recipe(path.string(), {});
  if (!loaded.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        hf_dir, "/config.json: the model does not make a valid rotor recipe: ", loaded.status().message()));
  }
  return absl::StrCat(
      "# Imported by `rotor import-hf ", hf_dir, "`: model, rope and logit_scale come from its\n",
      "# config.json. data and train are PLACEHOLDERS that only make this recipe loadable\n",
      "# (scoring and model.init_from use the model sections alone).\n",
      recipe_to_yaml(loaded->proto));
}

absl::Status import_hf(const std::string& hf_dir, const std::string& ckpt_dir, std::ostream& out) {
  const fs::path src(hf_dir);
  std::error_code ec;
  if (!fs::is_directory(src, ec)) return absl::NotFoundError(absl::StrCat(hf_dir, ": no such directory"));
  const fs::path config_path = src / "config.json";
  absl::StatusOr<nlohmann::json> config = read_json(config_path);
  if (!config.ok()) return config.status();
  absl::StatusOr<HfModel> hf = parse_hf_config(*config, config_path.string());
  if (!hf.ok()) return absl::InvalidArgumentError(hf.status().message());
  hf->config.rope_theta = hf->rope.theta;

  LlamaOptions options;
  options.rope = hf->rope;
  options.logit_scale = hf->logit_scale;
  absl::StatusOr<LlamaModel> model = LlamaModel::create(hf->config, options);
  if (!model.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(config_path.string(), ": ", model.status().message()));
  }

  // name -> file holding it.
  std::map<std::string, std::string> where;
  std::vector<std::string> files;
  const fs::path index_path = src / kIndexFile;
  if (fs::exists(index_path, ec)) {
    absl::StatusOr<nlohmann::json> index = read_json(index_path);
    if (!index.ok()) return index.status();
    if (!index->contains("weight_map") || !(*index)["weight_map"].is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(index_path.string(), ": no \"weight_map\" object"));
    }
    std::set<std::string> seen;
    for (const auto& [name, file] : (*index)["weight_map"].items()) {
      if (!file.is_string()) {
        return absl::InvalidArgumentError(
            absl::StrCat(index_path.string(), ": weight_map[\"", name, "\"] is not a file name"));
      }
      const std::string f = file.get<std::string>();
      if (f.find('/') != std::string::npos || f == ".." || f.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat(index_path.string(), ": weight_map[\"", name, "\"]: bad file name '", f, "'"));
      }
      where[name] = f;
      if (seen.insert(f).second) files.push_back(f);
    }
  } else if (fs::exists(src / kSingleFile, ec)) {
    files.push_back(kSingleFile);
  } else {
    return absl::NotFoundError(
        absl::StrCat(hf_dir, ": neither ", kSingleFile, " nor ", kIndexFile, " (no weights)"));
  }
  std::map<std::string, SafetensorsFile> open;
  for (const std::string& f : files) {
    if (!fs::exists(src / f, ec)) {
      return absl::NotFoundError(absl::StrCat((src / f).string(), ": missing (a shard named by ",
                                              kIndexFile, ")"));
    }
    absl::StatusOr<SafetensorsFile> st = SafetensorsFile::open((src / f).string());
    if (!st.ok()) return absl::InvalidArgumentError(st.status().message());
    if (where.empty() || files.size() == 1) {
      for (const SafetensorsEntry& e : st->entries()) where.emplace(e.name, f);
    }
    open.emplace(f, *std::move(st));
  }

  std::vector<Parameter>& params = model->parameters();
  std::set<std::string> expected;
  for (const Parameter& p : params) expected.insert(p.name);
  for (const auto& [name, file] : where) {
    if (expected.count(name)) continue;
    if (absl::EndsWith(name, ".rotary_emb.inv_freq")) continue;
    if (name == "lm_head.weight" && hf->config.tie_word_embeddings) continue;
    return absl::InvalidArgumentError(
        absl::StrCat((src / file).string(), ": unexpected tensor '", name, "' (not part of a ",
                     hf->config.tie_word_embeddings ? "tied" : "untied", " rotor Llama)"));
  }
  CheckpointTensors tensors;
  for (const Parameter& p : params) {
    auto it = where.find(p.name);
    if (it == where.end()) {
      return absl::InvalidArgumentError(absl::StrCat(hf_dir, ": tensor '", p.name, "' missing"));
    }
    const SafetensorsFile& f = open.at(it->second);
    const SafetensorsEntry* e = f.find(p.name);
    if (e == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat((src / it->second).string(), ": tensor '", p.name,
                                                     "' missing (", kIndexFile, " names this file)"));
    }
    const std::vector<int64_t> want = p.global_shape.vec();
    if (e->shape != want) {
      return absl::InvalidArgumentError(absl::StrCat((src / it->second).string(), ": tensor '", p.name,
                                                     "' has shape ", shape_str(e->shape), ", expected ",
                                                     shape_str(want)));
    }
    if (e->dtype != "F32" && e->dtype != "BF16" && e->dtype != "F16" && e->dtype != "F64") {
      return absl::InvalidArgumentError(absl::StrCat((src / it->second).string(), ": tensor '", p.name,
                                                     "' has dtype ", e->dtype, ", expected a float type"));
    }
    if (absl::Status s = f.read_into(p.name, p.value); !s.ok()) return absl::InvalidArgumentError(s.message());
    tensors.model.push_back({p.name, p.value});
    tensors.optimizer.push_back({"m." + p.name, Tensor::zeros(p.global_shape, DType::kF32)});
    tensors.optimizer.push_back({"v." + p.name, Tensor::zeros(p.global_shape, DType::kF32)});
  }

  const fs::path dst(ckpt_dir);
  if (absl::Status s = prepare_empty_dir(dst); !s.ok()) return s;
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
  absl::StatusOr<std::string> yaml = imported_recipe(*hf, hf_dir, tokenizer, scratch);
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
  out << "imported " << hf_dir << " into " << ckpt_dir << ": " << params.size() << " tensors ("
      << hf->config.num_parameters() << " parameters), rope " << rope_method_name(hf->rope.method)
      << "\n";
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<uint64_t> parse_shard_size(const std::string& text) {
  size_t i = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
  std::string unit = text.substr(i);
  for (char& ch : unit) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  uint64_t n = 0;
  if (i == 0 || !absl::SimpleAtoi(text.substr(0, i), &n)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max-shard-size: expected a size like 5GB, 500MB or 100KB, got '", text, "'"));
  }
  static const std::map<std::string, uint64_t> kUnits = {
      {"", 1},           {"B", 1},
      {"KB", 1000ULL},   {"MB", 1000'000ULL},   {"GB", 1000'000'000ULL},   {"TB", 1000'000'000'000ULL},
      {"KIB", 1ULL << 10}, {"MIB", 1ULL << 20}, {"GIB", 1ULL << 30},       {"TIB", 1ULL << 40}};
  auto it = kUnits.find(unit);
  if (it == kUnits.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max-shard-size: unknown unit '", text.substr(i), "' in '", text,
                     "' (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)"));
  }
  if (n == 0) return absl::InvalidArgumentError("--max-shard-size must be > 0");
  return n * it->second;
}

int run_export_hf_command(const std::vector<std::string>& args, std::ostream& out,
                          std::ostream& err) {
  if (asks_for_help(args)) {
    out << kExportUsage;
    return 0;
  }
  absl::StatusOr<ExportArgs> a = parse_export_args(args);
  if (!a.ok()) {
    err << "rotor export-hf: " << a.status().message() << "\n" << kExportUsage;
    return 2;
  }
  if (absl::Status s = export_hf(*a, out, err); !s.ok()) {
    err << "rotor export-hf: " << s.message() << "\n";
    return exit_code(s);
  }
  return 0;
}

int run_import_hf_command(const std::vector<std::string>& args, std::ostream& out,
                          std::ostream& err) {
  std::vector<std::string> positional;
  for (const std::string& a : args) {
    if (a == "--help" || a == "-h") {
      out << kImportUsage;
      return 0;
    }
    if (is_option(a)) {
      err << "rotor import-hf: unknown option '" << a << "'\n" << kImportUsage;
      return 2;
    }
    positional.push_back(a);
  }
  if (positional.size() != 2) {
    err << "rotor import-hf: expected HF_DIR and CHECKPOINT_DIR, got " << positional.size()
        << " argument(s)\n"
        << kImportUsage;
    return 2;
  }
  if (absl::Status s = import_hf(positional[0], positional[1], out); !s.ok()) {
    err << "rotor import-hf: " << s.message() << "\n";
    return exit_code(s);
  }
  return 0;
}

}  // namespace rotor
