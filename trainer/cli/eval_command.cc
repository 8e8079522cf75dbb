// `rotor eval`: perplexity vs length and attention statistics. See eval_command.h.
#include "trainer/cli/eval_command.h"

#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "data/indexed_dataset.h"
#include "eval/attention_stats.h"
#include "eval/csv.h"
#include "eval/ppl.h"
#include "model/llama.h"
#include "parallel/world.h"
#include "trainer/recipe/convert.h"
#include "trainer/cli/args.h"
#include "trainer/loading.h"
#include "trainer/recipe/recipe.h"
#include "kernels/status.h"

namespace rotor {
namespace {

namespace fs = std::filesystem;

constexpr char kUsage[] =
    "usage: rotor eval ppl RECIPE.yaml [--checkpoint DIR] [--set KEY=VALUE ...] [--out DIR]\n"
    "                      [--stride N] [--documents N]\n"
    "       rotor eval attention RECIPE.yaml [--checkpoint DIR] [--reference CHECKPOINT_DIR]\n"
    "                      [--length N] [--documents N] [--out DIR] [--set KEY=VALUE ...]\n"
    "       rotor eval passkey|needle RECIPE.yaml [--checkpoint DIR] [--set KEY=VALUE ...] [--out DIR]\n"
    "                      [--lengths 256,512] [--depths 0,0.25,0.5,0.75,1] [--trials N] [--seed N]\n"
    "       rotor eval ruler RECIPE.yaml [--checkpoint DIR] [--tasks T,...] [--lengths L,...]\n"
    "                      [--samples N] [--seed N] [--out DIR] [--dump FILE] [--set KEY=VALUE ...]\n"
    "\n"
    "ppl: perplexity at each of eval.lengths on the held-out documents (data.heldout),\n"
    "  one window per document (its first L+1 tokens), or a sliding window with --stride;\n"
    "  loss by position bucket. Writes <out>/ppl.csv.\n"
    "attention: attention entropy and distance per layer and head by query position, and\n"
    "  with --reference the Jensen-Shannon divergence against another checkpoint.\n"
    "  Writes <out>/attention.csv.\n"
    "  --checkpoint DIR  checkpoint or run directory (default: run.dir, its latest checkpoint)\n"
    "  --out DIR         output directory (default: <run.dir>/eval)\n"
    "  --documents N     documents per length (ppl default: max(1, eval.tokens / L);\n"
    "                    attention default: 1)\n"
    "  --stride N        ppl: sliding-window stride (1..L; default: one window per document)\n"
    "  --length N        attention: window length (default: data.sequence_length)\n"
    "  --reference DIR   attention: checkpoint to compare attention rows with (JS divergence)\n";

struct EvalArgs {
  std::string what;    // ppl | attention
  std::string recipe;
  std::string checkpoint, out, reference;
  std::vector<std::string> sets;
  int64_t stride = 0, documents = 0, length = 0;
};

absl::StatusOr<int64_t> positive(const std::string& name, const std::string& v) {
  int64_t x = 0;
  if (!absl::SimpleAtoi(v, &x) || x < 1) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": expected a positive integer, got '", v, "'"));
  }
  return x;
}

absl::StatusOr<EvalArgs> parse_args(const std::vector<std::string>& args) {
  EvalArgs a;
  if (args.empty()) return absl::InvalidArgumentError("which evaluation? (ppl, attention, passkey, needle, ruler)");
  a.what = args[0];
  if (a.what != "ppl" && a.what != "attention") {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown evaluation '", a.what, "' (ppl, attention, passkey, needle, ruler)"));
  }
  const bool ppl = a.what == "ppl";
  for (size_t i = 1; i < args.size(); ++i) {
    const OptionWord w = split_option(args[i]);
    const std::string& name = w.name;
    if (!is_option(name)) {
      if (!a.recipe.empty()) {
        return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", name, "' (one RECIPE.yaml only)"));
      }
      a.recipe = name;
      continue;
    }
    const bool known = name == "--checkpoint" || name == "--out" || name == "--set" ||
                       name == "--documents" || (ppl && name == "--stride") ||
                       (!ppl && (name == "--length" || name == "--reference"));
    if (!known) {
      return absl::InvalidArgumentError(absl::StrCat("unknown option '", name, "' for rotor eval ", a.what));
    }
    ROTOR_ASSIGN_OR_RETURN(std::string v, option_value(w, args, i));
    if (name == "--checkpoint") a.checkpoint = v;
    else if (name == "--out") a.out = v;
    else if (name == "--reference") a.reference = v;
    else if (name == "--set") a.sets.push_back(v);
    else {
      ROTOR_ASSIGN_OR_RETURN(int64_t n, positive(name, v));
      (name == "--stride" ? a.stride : name == "--documents" ? a.documents : a.length) = n;
    }
  }
  if (a.recipe.empty()) return absl::InvalidArgumentError("RECIPE.yaml is required");
  return a;
}

// What both evaluations share: the recipe, the checkpoint, held-out data, output dir.
struct Setup {
  LoadedRecipe recipe;
  std::string checkpoint;  // resolved checkpoint directory
  std::string run;         // run directory name (the CSV's run column)
  std::string out;
  std::unique_ptr<IndexedDataset> heldout;
};

absl::StatusOr<Setup> setup(const EvalArgs& a) {
  Setup s;
  absl::StatusOr<LoadedRecipe> r = load_recipe(a.recipe, a.sets);
  if (!r.ok()) return absl::InvalidArgumentError(r.status().message());
  s.recipe = *std::move(r);
  s.run = run_name(s.recipe.proto.run().dir());
  absl::StatusOr<std::string> dir = eval_checkpoint_dir(s.recipe, a.checkpoint);
  if (!dir.ok()) {
    return absl::NotFoundError(absl::StrCat(a.checkpoint.empty() ? "run.dir " : "--checkpoint ",
                                            dir.status().message()));
  }
  s.checkpoint = *dir;
  // A staged run: the settings of the stage that saved the checkpoint.
  absl::StatusOr<LoadedRecipe> staged = checkpoint_stage_recipe(s.recipe, s.checkpoint);
  if (!staged.ok()) return staged.status();
  s.recipe = *std::move(staged);
  s.out = eval_out_dir(s.recipe, a.out);
  absl::StatusOr<std::unique_ptr<IndexedDataset>> heldout = open_heldout(s.recipe);
  if (!heldout.ok()) return heldout.status();
  s.heldout = *std::move(heldout);
  return s;
}

// Writes <s.out>/NAME: `header`, then `rows`.
absl::Status write_csv(const Setup& s, const std::string& name, const char* header,
                       const std::vector<std::string>& rows) {
  absl::StatusOr<std::ofstream> csv = eval::open_csv(s.out, name, header);
  if (!csv.ok()) return absl::PermissionDeniedError(absl::StrCat("--out ", csv.status().message()));
  for (const std::string& row : rows) *csv << row << "\n";
  csv->close();
  if (!*csv) return absl::DataLossError(absl::StrCat(s.out, "/", name, ": write failed"));
  return absl::OkStatus();
}

absl::Status run_ppl(const EvalArgs& a, Setup& s, Communicator& world, std::ostream& out) {
  const recipe::Recipe& r = s.recipe.proto;
  if (r.eval().lengths().empty()) {
    return absl::InvalidArgumentError(absl::StrCat(a.recipe, ": eval.lengths is empty (set it, e.g. --set eval.lengths=[1024,4096])"));
  }
  ROTOR_ASSIGN_OR_RETURN(LaidOutModel m, load_laid_out_model(s.recipe, s.checkpoint, world, /*recompute=*/true));
  const eval::PplRun run{.lengths = {r.eval().lengths().begin(), r.eval().lengths().end()},
                         .stride = a.stride,
                         .documents = a.documents,
                         .token_budget = r.eval().tokens()};
  ROTOR_ASSIGN_OR_RETURN(std::vector<eval::LengthPerplexity> results, eval::perplexity_by_length(m.model, *s.heldout, run, m.layout.par));
  if (world.rank() != 0) return absl::OkStatus();

  const int64_t train_length = r.data().sequence_length();
  if (absl::Status st = write_csv(s, "ppl.csv", eval::kPplCsvHeader,
                                  eval::ppl_csv_rows(s.run, m.step, train_length, results));
      !st.ok()) {
    return st;
  }
  out << absl::StrFormat("perplexity of %s (step %d), trained at %d tokens%s\n", s.checkpoint, m.step,
                         train_length, a.stride ? absl::StrCat(", stride ", a.stride) : "");
  out << absl::StrFormat("%8s %9s %8s %10s %9s %10s  by bucket (loss)\n", "length", "documents", "skipped",
                         "tokens", "loss", "ppl");
  for (const eval::LengthPerplexity& p : results) {
    std::string by_bucket;
    for (const eval::BucketLoss& b : p.buckets) {
      absl::StrAppend(&by_bucket, " ", b.bucket.label, ":", absl::StrFormat("%.3f", b.mean_loss()));
    }
    out << absl::StrFormat("%8d %9d %8d %10d %9.4f %10.3f %s\n", p.length, p.documents, p.skipped, p.tokens,
                           p.mean_loss(), p.ppl(), by_bucket);
    if (p.documents == 0) out << "  (no held-out document has " << p.length + 1 << " tokens)\n";
  }
  out << "wrote " << (fs::path(s.out) / "ppl.csv").string() << "\n";
  return absl::OkStatus();
}

// The JS divergence of `model`'s attention rows against those of checkpoint
// `a.reference` (its own recipe, the same layout); `reference` gets its directory.
absl::StatusOr<eval::HeadBucketTable> reference_divergence(const EvalArgs& a, LaidOutModel& m,
                                                            const Batch& batch, int64_t width,
                                                            std::string& reference) {
  absl::StatusOr<std::string> dir = resolve_checkpoint_dir(a.reference);
  if (!dir.ok()) return absl::NotFoundError(absl::StrCat("--reference ", dir.status().message()));
  reference = *dir;
  int64_t ref_step = 0;
  absl::StatusOr<LlamaModel> ref = load_checkpoint_model(reference, m.layout.par, /*recompute=*/false, ref_step);
  if (!ref.ok()) return with_context(ref.status(), "--reference: ");
  absl::StatusOr<eval::HeadBucketTable> js = eval::attention_js_divergence(m.model, *ref, batch, width);
  if (!js.ok()) return absl::InvalidArgumentError(absl::StrCat("--reference: ", js.status().message()));
  return js;
}

absl::Status run_attention(const EvalArgs& a, Setup& s, Communicator& world, std::ostream& out) {
  const int64_t length = a.length > 0 ? a.length : s.recipe.proto.data().sequence_length();
  ROTOR_ASSIGN_OR_RETURN(std::vector<eval::PplWindow> windows, eval::leading_windows(*s.heldout, length, a.documents > 0 ? a.documents : 1));
  if (windows.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--length ", length, ": no held-out document has ", length + 1, " tokens"));
  }
  const Batch batch = eval::window_batch(windows, length);
  const int64_t width = eval::default_bucket_width(length);
  // The training layout: rows of every query against the whole sequence,
  // heads over tp and query rows over cp (attention_stats.h).
  ROTOR_ASSIGN_OR_RETURN(LaidOutModel m, load_laid_out_model(s.recipe, s.checkpoint, world, /*recompute=*/false));
  ROTOR_ASSIGN_OR_RETURN(eval::AttentionStats stats, eval::attention_stats(m.model, batch, width));
  std::optional<eval::HeadBucketTable> js;
  std::string reference;
  if (!a.reference.empty()) {
    ROTOR_ASSIGN_OR_RETURN(eval::HeadBucketTable j, reference_divergence(a, m, batch, width, reference));
    js = std::move(j);
  }
  if (world.rank() != 0) return absl::OkStatus();  // every rank holds the summed tables

  if (absl::Status st = write_csv(s, "attention.csv", eval::kAttentionCsvHeader,
                                  eval::attention_csv_rows(s.run, m.step, length, stats,
                                                           js ? &*js : nullptr, reference));
      !st.ok()) {
    return st;
  }
  out << absl::StrFormat("attention of %s (step %d), %d window(s) of %d tokens%s\n", s.checkpoint, m.step,
                         windows.size(), length, js ? absl::StrCat(", reference ", reference) : "");
  out << absl::StrFormat("%6s %12s %12s%s\n", "layer", "entropy", "distance", js ? "  js_divergence" : "");
  for (int64_t l = 0; l < stats.entropy.layers(); ++l) {
    out << absl::StrFormat("%6d %12.4f %12.2f", l, stats.entropy.mean(l, -1), stats.distance.mean(l, -1));
    if (js) out << absl::StrFormat("  %13.5f", js->mean(l, -1));
    out << "\n";
  }
  out << "wrote " << (fs::path(s.out) / "attention.csv").string() << "\n";
  return absl::OkStatus();
}

}  // namespace

int run_eval_command(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {

  if (asks_for_help(args)) {
    out << kUsage;
    return 0;
  }
  absl::StatusOr<EvalArgs> a = parse_args(args);
  if (!a.ok()) {
    err << "rotor eval: " << a.status().message() << "\n" << kUsage;
    return 2;
  }
  absl::StatusOr<Setup> s = setup(*a);
  if (!s.ok()) {
    err << "rotor eval " << a->what << ": " << s.status().message() << "\n";
    return exit_status(s.status());
  }
  ProcessWorld world;
  if (absl::StatusOr<Device> d = world.use_device(recipe_device_type(s->recipe.proto)); !d.ok()) {
    err << "rotor eval " << a->what << ": " << d.status().message() << "\n";
    return 1;
  }
  RankZeroStream rank0(world.comm(), out);
  const absl::Status st = a->what == "ppl" ? run_ppl(*a, *s, world.comm(), rank0.get())
                                           : run_attention(*a, *s, world.comm(), rank0.get());
  if (!st.ok()) {
    if (world.comm().size() > 1) world.comm().abort(absl::StrCat("rotor eval ", a->what, ": ", st.message()));
    err << "rotor eval " << a->what << ": " << st.message() << "\n";
    return exit_status(st);
  }
  return 0;
}

}  // namespace rotor
