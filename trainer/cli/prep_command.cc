// `rotor prep`: arguments -> PrepOptions -> prep_dataset. See prep_command.h.
#include "trainer/cli/prep_command.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "trainer/cli/args.h"
#include "kernels/status.h"

namespace rotor {
namespace {

constexpr char kUsage[] =
    "usage: rotor prep --tokenizer {spm:PATH|bytes} --input FILE... --output PREFIX\n"
    "                  [--jsonl-key KEY]\n"
    "\n"
    "Tokenizes text or JSONL into a Megatron indexed dataset (PREFIX.bin, PREFIX.idx).\n"
    "  --tokenizer SPEC  'bytes' (260 ids: bytes, <bos>, <eos>, <pad>, <unk>) or\n"
    "                    'spm:PATH' (a SentencePiece model, e.g. Llama-2's tokenizer.model)\n"
    "  --input FILE...   inputs, in order; a plain-text file is one document, a .jsonl\n"
    "                    file one document per line\n"
    "  --output PREFIX   dataset prefix\n"
    "  --jsonl-key KEY   read every input as JSONL, documents under KEY (default \"text\")\n"
    "Each document ends with the tokenizer's end-of-document token. Tokens are uint16\n"
    "when the vocabulary has fewer than 65536 ids, else int32.\n";


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
