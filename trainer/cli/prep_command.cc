// `rotor prep`: arguments -> PrepOptions -> prep_dataset. See prep_command.h.
#include "trainer/cli/prep_command.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "data/tokenizer.h"
#include "eval/ruler_text.h"
#include "eval/synthetic.h"
#include "trainer/cli/args.h"
#include "kernels/status.h"

namespace rotor {
namespace {

constexpr char kUsage[] =
    "usage: rotor prep --tokenizer {spm:PATH|bytes} --input FILE... --output PREFIX\n"
    "                  [--jsonl-key KEY]\n"
    "       rotor prep --tokenizer SPEC --output PREFIX --synthetic passkey=N,needle=M\n"
    "                  --length L|MIN-MAX [--distractors D] [--seed S]\n"
    "\n"
    "Tokenizes text or JSONL into a Megatron indexed dataset (PREFIX.bin, PREFIX.idx).\n"
    "  --tokenizer SPEC  'bytes' (260 ids: bytes, <bos>, <eos>, <pad>, <unk>) or\n"
    "                    'spm:PATH' (a SentencePiece model, e.g. Llama-2's tokenizer.model)\n"
    "  --input FILE...   inputs, in order; a plain-text file is one document, a .jsonl\n"
    "                    file one document per line\n"
    "  --output PREFIX   dataset prefix\n"
    "  --jsonl-key KEY   read every input as JSONL, documents under KEY (default \"text\")\n"
    "Each document ends with the tokenizer's end-of-document token. Tokens are uint16\n"
    "when the vocabulary has fewer than 65536 ids, else int32.\n"
    "\n"
    "--synthetic writes retrieval documents for pretraining data instead (eval/synthetic.h):\n"
    "N passkey prompts and M RULER single-needle prompts with their answers, each exactly\n"
    "L tokens (prompt, answer, eos), so that packed at length L a sample is one document;\n"
    "with --length MIN-MAX the lengths vary (train them with the dataset's packing: whole).\n"
    "  --distractors D   needle documents: D more needles of other keys (default 0)\n"
    "  --seed S          keys, values and depths (default 1)\n";

// `rotor prep --synthetic ...`: the options of eval/synthetic.h.
struct SyntheticArgs {
  std::string tokenizer, output;
  SyntheticOptions options;
};

absl::Status synthetic_counts(const std::string& value, SyntheticOptions& o) {
  for (absl::string_view part : absl::StrSplit(value, ',')) {
    const std::vector<std::string> kv = absl::StrSplit(part, absl::MaxSplits('=', 1));
    int64_t n = -1;
    if (kv.size() != 2 || !absl::SimpleAtoi(kv[1], &n) || n < 0 || (kv[0] != "passkey" && kv[0] != "needle"))
      return absl::InvalidArgumentError(absl::StrCat("--synthetic: '", part, "' is not passkey=N or needle=N"));
    (kv[0] == "passkey" ? o.passkey : o.needle) = n;
  }
  return absl::OkStatus();
}

absl::StatusOr<SyntheticArgs> parse_synthetic_args(const std::vector<std::string>& args) {
  SyntheticArgs a;
  a.options.seed = 1;
  for (size_t i = 0; i < args.size(); ++i) {
    const OptionWord w = split_option(args[i]);
    if (!is_option(w.name)) return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", w.name, "'"));
    ROTOR_ASSIGN_OR_RETURN(std::string v, option_value(w, args, i));
    int64_t n = 0;
    const bool number = absl::SimpleAtoi(v, &n) && n >= 0;
    if (w.name == "--tokenizer") {
      a.tokenizer = v;
    } else if (w.name == "--output") {
      a.output = v;
    } else if (w.name == "--synthetic") {
      ROTOR_RETURN_IF_ERROR(synthetic_counts(v, a.options));
    } else if (w.name == "--length" && v.find('-') != std::string::npos) {
      const std::vector<std::string> ab = absl::StrSplit(v, absl::MaxSplits('-', 1));
      if (!absl::SimpleAtoi(ab[0], &a.options.min_length) || !absl::SimpleAtoi(ab[1], &a.options.length) ||
          a.options.min_length < 1 || a.options.min_length > a.options.length)
        return absl::InvalidArgumentError(absl::StrCat("--length: '", v, "' is not N or MIN-MAX (1 <= MIN <= MAX)"));
    } else if (w.name == "--length" || w.name == "--distractors" || w.name == "--seed") {
      if (!number) return absl::InvalidArgumentError(absl::StrCat(w.name, ": '", v, "' is not a non-negative integer"));
      if (w.name == "--length") a.options.length = n;
      if (w.name == "--distractors") a.options.distractors = n;
      if (w.name == "--seed") a.options.seed = static_cast<uint64_t>(n);
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown option '", w.name, "' (with --synthetic)"));
    }
  }
  if (a.tokenizer.empty()) return absl::InvalidArgumentError("--tokenizer is required");
  if (a.output.empty()) return absl::InvalidArgumentError("--output is required");
  if (a.options.length < 1) return absl::InvalidArgumentError("--length is required with --synthetic");
  if (a.options.passkey + a.options.needle < 1) return absl::InvalidArgumentError("--synthetic: no documents (passkey=N,needle=M)");
  return a;
}

int run_synthetic(const std::vector<std::string>& args, std::ostream& err) {
  absl::StatusOr<SyntheticArgs> a = parse_synthetic_args(args);
  if (!a.ok()) {
    err << "rotor prep: " << a.status().message() << "\n'rotor prep --help' describes the arguments.\n";
    return 2;
  }
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok = make_tokenizer(a->tokenizer);
  std::vector<std::string> words;
  absl::Status s = tok.status();
  if (s.ok() && a->options.needle > 0) {
    absl::StatusOr<std::vector<std::string>> w = ruler::load_word_list();
    if (w.ok()) words = *std::move(w);
    s = w.status();
  }
  if (s.ok()) s = write_synthetic_dataset(**tok, words, a->options, a->output);
  if (!s.ok()) {
    err << "rotor prep: " << s.message() << "\n";
    return 2;
  }
  err << "rotor prep: wrote " << a->options.passkey << " passkey and " << a->options.needle << " needle documents of "
      << (a->options.min_length > 0 ? absl::StrCat(a->options.min_length, "-") : "") << a->options.length
      << " tokens to " << a->output << "\n";
  return 0;
}


}  // namespace

absl::StatusOr<PrepOptions> parse_prep_args(const std::vector<std::string>& args) {
  PrepOptions options;
  bool have_tokenizer = false;
  bool have_output = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const OptionWord word = split_option(args[i]);
    const std::string& name = word.name;
    // The value of a single-valued option: --opt=VALUE or --opt VALUE.
    auto value = [&]() { return option_value(word, args, i); };
    if (name == "--tokenizer") {
      ROTOR_ASSIGN_OR_RETURN(std::string v, value());
      options.tokenizer = std::move(v);
      have_tokenizer = true;
    } else if (name == "--output") {
      ROTOR_ASSIGN_OR_RETURN(std::string v, value());
      options.output = std::move(v);
      have_output = true;
    } else if (name == "--jsonl-key") {
      ROTOR_ASSIGN_OR_RETURN(std::string v, value());
      if (v.empty()) return absl::InvalidArgumentError("--jsonl-key needs a non-empty key");
      options.jsonl_key = std::move(v);
    } else if (name == "--input") {
      const size_t before = options.inputs.size();
      if (word.inline_value) options.inputs.push_back(*word.inline_value);
      while (i + 1 < args.size() && !is_option(args[i + 1])) options.inputs.push_back(args[++i]);
      if (options.inputs.size() == before) {
        return absl::InvalidArgumentError("--input needs at least one file");
      }
    } else if (is_option(name)) {
      return absl::InvalidArgumentError(absl::StrCat("unknown option '", name, "'"));
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("unexpected argument '", name, "' (inputs follow --input)"));
    }
  }
  if (!have_tokenizer) return absl::InvalidArgumentError("--tokenizer is required");
  if (options.inputs.empty()) return absl::InvalidArgumentError("--input is required");
  if (!have_output || options.output.empty()) {
    return absl::InvalidArgumentError("--output is required");
  }
  return options;
}

int run_prep_command(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  if (asks_for_help(args)) {
    out << kUsage;
    return 0;
  }
  for (const std::string& a : args)
    if (split_option(a).name == "--synthetic") return run_synthetic(args, err);
  absl::StatusOr<PrepOptions> options = parse_prep_args(args);
  if (!options.ok()) {
    err << "rotor prep: " << options.status().message() << "\n"
        << "'rotor prep --help' describes the arguments.\n";
    return 2;
  }
  if (absl::Status s = prep_dataset(*options, err); !s.ok()) {
    err << "rotor prep: " << s.message() << "\n";
    return 2;
  }
  return 0;
}

}  // namespace rotor
