// `rotor export-hf` / `rotor import-hf`. See hf_command.h.
#include "trainer/cli/hf_command.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "model/rope.h"
#include "trainer/cli/args.h"
#include "trainer/hf/convert.h"
#include "trainer/hf/modeling_code.h"
#include "kernels/status.h"

namespace rotor {
namespace {

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
    "recipe.yaml has the model, rope and logit_scale of config.json (and the tokenizer when\n"
    "the directory has tokenizer.model), nothing else. CHECKPOINT_DIR must not exist or be empty.\n";

// A destination in the way (kAlreadyExists) is an input error too.
int exit_code(const absl::Status& s) {
  return exit_status(s, {absl::StatusCode::kAlreadyExists});
}

absl::StatusOr<ExportOptions> parse_export_args(const std::vector<std::string>& args) {
  ExportOptions a;
  std::vector<std::string> positional;
  bool have_dtype = false, have_shard = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const OptionWord word = split_option(args[i]);
    const std::string& name = word.name;
    const bool has_inline = word.inline_value.has_value();
    auto value = [&]() { return option_value(word, args, i); };
    if (name == "--dtype") {
      if (have_dtype) return absl::InvalidArgumentError("--dtype given twice");
      ROTOR_ASSIGN_OR_RETURN(std::string v, value());
      if (v != "bf16" && v != "f16" && v != "f32") {
        return absl::InvalidArgumentError(absl::StrCat("--dtype must be bf16, f16 or f32, got '", v, "'"));
      }
      a.dtype = v;
      have_dtype = true;
    } else if (name == "--max-shard-size") {
      if (have_shard) return absl::InvalidArgumentError("--max-shard-size given twice");
      ROTOR_ASSIGN_OR_RETURN(std::string v, value());
      ROTOR_ASSIGN_OR_RETURN(uint64_t n, parse_shard_size(v));
      a.max_shard = n;
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

// The warning of an export with a logit scalar, which transformers ignores.
void warn_logit_scale(LogitScaleKind kind, bool modeling_code, std::ostream& err) {
  err << "rotor export-hf: warning: the checkpoint uses a logit scalar (logit_scale.kind "
      << logit_scale_kind_name(kind)
      << "), exported as config.json \"rotor_logit_scale\", which transformers has no key for. ";
  if (modeling_code) {
    err << "Load with trust_remote_code=True so that " << kModelingRotorLlamaFile
        << " applies it; without it the outputs differ from rotor's.\n";
  } else {
    err << "transformers ignores it, so the exported model's outputs differ from rotor's; "
           "--with-modeling-code writes modeling code that applies it (trust_remote_code).\n";
  }
}

}  // namespace

absl::StatusOr<uint64_t> parse_shard_size(const std::string& text) {
  ROTOR_ASSIGN_OR_RETURN(int64_t n, parse_byte_size(text, "--max-shard-size"));
  return static_cast<uint64_t>(n);
}

int run_export_hf_command(const std::vector<std::string>& args, std::ostream& out,
                          std::ostream& err) {
  if (asks_for_help(args)) {
    out << kExportUsage;
    return 0;
  }
  absl::StatusOr<ExportOptions> a = parse_export_args(args);
  if (!a.ok()) {
    err << "rotor export-hf: " << a.status().message() << "\n" << kExportUsage;
    return 2;
  }
  absl::StatusOr<ExportSummary> r =
      export_hf(*a, [&](const std::string& warning) { err << "rotor export-hf: warning: " << warning << "\n"; });
  if (!r.ok()) {
    err << "rotor export-hf: " << r.status().message() << "\n";
    return exit_code(r.status());
  }
  if (r->logit_scale != LogitScaleKind::kNone) warn_logit_scale(r->logit_scale, a->modeling_code, err);
  out << "exported " << r->checkpoint << " (step " << r->step << ") to " << a->hf_dir << ": " << r->tensors
      << " tensors, " << r->bytes << " bytes of " << a->dtype << " in " << r->files << " file(s)\n";
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
  absl::StatusOr<ImportSummary> r = import_hf(positional[0], positional[1]);
  if (!r.ok()) {
    err << "rotor import-hf: " << r.status().message() << "\n";
    return exit_code(r.status());
  }
  out << "imported " << positional[0] << " into " << positional[1] << ": " << r->tensors << " tensors ("
      << r->parameters << " parameters), rope " << rope_method_name(r->rope) << "\n";
  return 0;
}

}  // namespace rotor
