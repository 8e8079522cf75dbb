// `rotor score`: checkpoint + ids -> log-probabilities. See score_command.h.
#include "trainer/cli/score_command.h"

#include <bit>
#include <filesystem>
#include <fstream>
#include <memory>
#include <span>
#include <utility>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "data/tokenizer.h"
#include "eval/score.h"
#include "trainer/cli/args.h"
#include "trainer/loading.h"
#include "kernels/status.h"

namespace rotor {
namespace {

namespace fs = std::filesystem;

constexpr char kUsage[] =
    "usage: rotor score CHECKPOINT_DIR (--tokens FILE | --text FILE) [--logits OUT]\n"
    "\n"
    "Per-token log-probabilities of a text under a checkpoint, one JSON line per token:\n"
    "  {\"index\": i, \"token\": id, \"logprob\": log p(token i | tokens before i)}\n"
    "(null for index 0; with --text also \"text\", the token's piece). A summary (mean\n"
    "negative log-likelihood in nats, perplexity) goes to stderr.\n"
    "  CHECKPOINT_DIR  a checkpoint directory, or a run directory (its latest checkpoint)\n"
    "  --tokens FILE   whitespace-separated token ids\n"
    "  --text FILE     text, tokenized with the checkpoint's tokenizer (no bos/eos added)\n"
    "  --logits OUT    also write the logits: little-endian float32 [tokens, vocab_size]\n"
    "The sequence is one forward pass with the logits materialised (tokens * vocab_size\n"
    "* 4 bytes), so it suits texts up to a few thousand tokens.\n";

struct ScoreArgs {
  std::string checkpoint;
  std::string tokens;  // --tokens FILE
  std::string text;    // --text FILE
  std::string logits;  // --logits OUT
};

absl::StatusOr<ScoreArgs> parse_score_args(const std::vector<std::string>& args) {
  ScoreArgs a;
  bool have_tokens = false, have_text = false, have_logits = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const OptionWord word = split_option(args[i]);
    const std::string& name = word.name;
    auto value = [&]() { return option_value(word, args, i); };
    auto take = [&](std::string& field, bool& seen) -> absl::Status {
      if (seen) return absl::InvalidArgumentError(absl::StrCat(name, " given twice"));
      ROTOR_ASSIGN_OR_RETURN(std::string v, value());
      field = std::move(v);
      seen = true;
      return absl::OkStatus();
    };
    if (name == "--tokens") {
      ROTOR_RETURN_IF_ERROR(take(a.tokens, have_tokens));
    } else if (name == "--text") {
      ROTOR_RETURN_IF_ERROR(take(a.text, have_text));
    } else if (name == "--logits") {
      ROTOR_RETURN_IF_ERROR(take(a.logits, have_logits));
    } else if (is_option(name)) {
      return absl::InvalidArgumentError(absl::StrCat("unknown option '", name, "'"));
    } else if (a.checkpoint.empty()) {
      a.checkpoint = name;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("unexpected argument '", name, "' (one CHECKPOINT_DIR only)"));
    }
  }
  if (a.checkpoint.empty()) return absl::InvalidArgumentError("CHECKPOINT_DIR is required");
  if (have_tokens == have_text) {
    return absl::InvalidArgumentError(have_tokens ? "give one of --tokens and --text, not both"
                                                  : "one of --tokens FILE or --text FILE is required");
  }
  return a;
}

int fail(std::ostream& err, const absl::Status& s, int code) {
  err << "rotor score: " << s.message() << "\n";
  return code;
}

}  // namespace

int run_score_command(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  static_assert(std::endian::native == std::endian::little, "--logits writes host floats as little-endian");
  if (asks_for_help(args)) {
    out << kUsage;
    return 0;
  }
  absl::StatusOr<ScoreArgs> a = parse_score_args(args);
  if (!a.ok()) {
    err << "rotor score: " << a.status().message() << "\n" << kUsage;
    return 2;
  }
  // Input files first (cheap), then the recipe and model, then the weights.
  const std::string& input = a->tokens.empty() ? a->text : a->tokens;
  if (std::error_code ec; !fs::exists(input, ec)) {
    return fail(err, absl::NotFoundError(absl::StrCat(input, ": no such file")), 2);
  }
  absl::StatusOr<ScoringModel> m = load_scoring_model(a->checkpoint, /*load_weights=*/false);
  if (!m.ok()) return fail(err, m.status(), exit_status(m.status()));
  const int64_t vocab = m->model.config().vocab_size;

  std::vector<int32_t> ids;
  std::unique_ptr<Tokenizer> tokenizer;
  if (!a->tokens.empty()) {
    absl::StatusOr<std::vector<int32_t>> t = read_token_file(a->tokens, vocab);
    if (!t.ok()) return fail(err, t.status(), 2);
    ids = *std::move(t);
  } else {
    absl::StatusOr<std::unique_ptr<Tokenizer>> t = checkpoint_tokenizer(*m);
    if (!t.ok()) return fail(err, t.status(), 2);
    tokenizer = *std::move(t);
    absl::StatusOr<std::vector<int32_t>> e = encode_text_file(*tokenizer, a->text, vocab);
    if (!e.ok()) return fail(err, e.status(), 2);
    ids = *std::move(e);
  }
  if (ids.size() < 2) {
    return fail(err, absl::InvalidArgumentError(absl::StrCat(
                         input, ": need at least 2 tokens to score, got ", ids.size())),
                2);
  }

  if (absl::Status s = load_scoring_weights(*m); !s.ok()) return fail(err, s, exit_status(s));
  std::ofstream logits_file;
  if (!a->logits.empty()) {
    logits_file.open(a->logits, std::ios::binary | std::ios::trunc);
    if (!logits_file) {
      return fail(err, absl::PermissionDeniedError(absl::StrCat(a->logits, ": cannot open for writing")), 1);
    }
  }
  absl::StatusOr<ScoreResult> r = score_ids(m->model, ids, !a->logits.empty());
  if (!r.ok()) return fail(err, r.status(), 1);
  r->checkpoint = m->dir;
  r->step = m->step;

  for (size_t i = 0; i < ids.size(); ++i) {
    nlohmann::ordered_json j;
    j["index"] = i;
    j["token"] = ids[i];
    j["logprob"] = i == 0 ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(r->logprobs[i]);
    if (tokenizer) {
      absl::StatusOr<std::string> piece = tokenizer->decode(std::span<const int32_t>(&ids[i], 1));
      if (!piece.ok()) return fail(err, piece.status(), 1);
      j["text"] = *piece;
    }
    out << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  }
  out.flush();
  if (logits_file.is_open()) {
    logits_file.write(reinterpret_cast<const char*>(r->logits.data()),
                      static_cast<std::streamsize>(r->logits.size() * sizeof(float)));
    logits_file.close();
    if (!logits_file) {
      return fail(err, absl::DataLossError(absl::StrCat(a->logits, ": write failed")), 1);
    }
  }
  err << absl::StrFormat(
      "scored %d tokens (the first of %d has no context) | mean nll %.6f nats | perplexity %.4f | "
      "checkpoint %s (step %d)\n",
      r->scored, ids.size(), r->mean_nll(), r->perplexity(), r->checkpoint, r->step);
  return out ? 0 : 1;
}

}  // namespace rotor
