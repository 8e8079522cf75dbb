// `rotor eval`: perplexity vs length and attention statistics. See eval_command.h.
#include "trainer/cli/eval_command.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
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
#include "parallel/context.h"
#include "parallel/process_grid.h"
#include "trainer/checkpoint.h"
#include "trainer/cli/args.h"
#include "trainer/recipe/recipe.h"
#include "trainer/recipe/layout.h"
#include "trainer/loading.h"
#include "parallel/world.h"

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
  if (args.empty()) return absl::InvalidArgumentError("which evaluation? (ppl, attention, passkey, needle)");
  a.what = args[0];
  if (a.what != "ppl" && a.what != "attention") {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown evaluation '", a.what, "' (ppl, attention, passkey, needle)"));
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
    absl::StatusOr<std::string> v = option_value(w, args, i);
    if (!v.ok()) return v.status();
    if (name == "--checkpoint") a.checkpoint = *v;
    else if (name == "--out") a.out = *v;
    else if (name == "--reference") a.reference = *v;
    else if (name == "--set") a.sets.push_back(*v);
    else {
      absl::StatusOr<int64_t> n = positive(name, *v);
      if (!n.ok()) return n.status();
      (name == "--stride" ? a.stride : name == "--documents" ? a.documents : a.length) = *n;
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
  const std::string run_dir = s.recipe.proto.run().dir();
  s.run = fs::path(run_dir).lexically_normal().filename().string();
  if (s.run.empty()) s.run = fs::path(run_dir).lexically_normal().parent_path().filename().string();
  const std::string ckpt = a.checkpoint.empty() ? run_dir : a.checkpoint;
  absl::StatusOr<std::string> dir = resolve_checkpoint_dir(ckpt);
  if (!dir.ok()) {
    return absl::NotFoundError(absl::StrCat(a.checkpoint.empty() ? "run.dir " : "--checkpoint ",
                                            dir.status().message()));
  }
  s.checkpoint = *dir;
  s.out = a.out.empty() ? (fs::path(run_dir) / "eval").string() : a.out;
  const std::string& heldout = s.recipe.proto.data().heldout();
  if (heldout.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(a.recipe, ": data.heldout is not set (held-out documents to evaluate on)"));
  }
  absl::StatusOr<IndexedDataset> h = IndexedDataset::open(heldout);
  if (!h.ok()) return absl::NotFoundError(absl::StrCat("data.heldout: ", h.status().message()));
  s.heldout = std::make_unique<IndexedDataset>(*std::move(h));
  return s;
}

absl::StatusOr<std::ofstream> open_csv(const std::string& dir, const std::string& name, const char* header) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  const std::string path = (fs::path(dir) / name).string();
  std::ofstream f(path, std::ios::trunc);
  if (ec || !f) return absl::PermissionDeniedError(absl::StrCat("--out ", path, ": cannot open for writing"));
  f << header << "\n";
  return f;
}

absl::Status run_ppl(const EvalArgs& a, Setup& s, Communicator& world, std::ostream& out) {
  const recipe::Recipe& r = s.recipe.proto;
  if (r.eval().lengths().empty()) {
    return absl::InvalidArgumentError(absl::StrCat(a.recipe, ": eval.lengths is empty (set it, e.g. --set eval.lengths=[1024,4096])"));
  }
  absl::StatusOr<RecipeLayout> layout = recipe_layout(r, world);
  if (!layout.ok()) return layout.status();
  const ParallelContext& par = layout->par;
  int64_t step = 0;
  absl::StatusOr<LlamaModel> model = load_eval_model(s.recipe, s.checkpoint, par, /*recompute=*/true, step);
  if (!model.ok()) return model.status();

  std::vector<eval::LengthPerplexity> results;
  for (int64_t length : r.eval().lengths()) {
    eval::PplOptions o;
    o.lengths = {length};
    o.stride = a.stride;
    o.max_documents = a.documents > 0 ? a.documents : std::max<int64_t>(1, r.eval().tokens() / length);
    absl::StatusOr<std::vector<eval::LengthPerplexity>> p = eval::perplexity_at_lengths(*model, *s.heldout, o, par);
    if (!p.ok()) return absl::InvalidArgumentError(absl::StrCat("length ", length, ": ", p.status().message()));
    results.push_back(p->front());
  }
  if (world.rank() != 0) return absl::OkStatus();

  absl::StatusOr<std::ofstream> csv = open_csv(s.out, "ppl.csv", kPplCsvHeader);
  if (!csv.ok()) return csv.status();
  const int64_t train_length = r.data().sequence_length();
  auto row = [&](const eval::LengthPerplexity& p, const std::string& bucket, int64_t tokens, double loss) {
    *csv << absl::StrFormat("%s,%d,%d,%d,%s,%d,%d,%.8g,%.8g\n", eval::csv_field(s.run), step, train_length, p.length, bucket,
                            p.documents, tokens, loss, std::exp(loss));
  };
  out << absl::StrFormat("perplexity of %s (step %d), trained at %d tokens%s\n", s.checkpoint, step,
                         train_length, a.stride ? absl::StrCat(", stride ", a.stride) : "");
  out << absl::StrFormat("%8s %9s %8s %10s %9s %10s  by bucket (loss)\n", "length", "documents", "skipped",
                         "tokens", "loss", "ppl");
  for (const eval::LengthPerplexity& p : results) {
    row(p, "all", p.tokens, p.mean_loss());
    std::string by_bucket;
    for (const eval::BucketLoss& b : p.buckets) {
      row(p, b.bucket.label, b.tokens, b.mean_loss());
      absl::StrAppend(&by_bucket, " ", b.bucket.label, ":", absl::StrFormat("%.3f", b.mean_loss()));
    }
    out << absl::StrFormat("%8d %9d %8d %10d %9.4f %10.3f %s\n", p.length, p.documents, p.skipped, p.tokens,
                           p.mean_loss(), p.ppl(), by_bucket);
    if (p.documents == 0) out << "  (no held-out document has " << p.length + 1 << " tokens)\n";
  }
  csv->close();
  if (!*csv) return absl::DataLossError(absl::StrCat(s.out, "/ppl.csv: write failed"));
  out << "wrote " << (fs::path(s.out) / "ppl.csv").string() << "\n";
  return absl::OkStatus();
}

absl::Status run_attention(const EvalArgs& a, Setup& s, Communicator& world, std::ostream& out) {
  const int64_t length = a.length > 0 ? a.length : s.recipe.proto.data().sequence_length();
  const int64_t documents = a.documents > 0 ? a.documents : 1;
  // The first documents long enough, one window each (as ppl does).
  std::vector<eval::PplWindow> windows;
  for (int64_t d = 0; d < s.heldout->num_documents() && static_cast<int64_t>(windows.size()) < documents; ++d) {
    const auto [first, last] = s.heldout->document_range(d);
    std::vector<int32_t> tokens;
    for (int64_t q = first; q < last && static_cast<int64_t>(tokens.size()) < length + 1; ++q) {
      const int64_t n = std::min(s.heldout->sequence_length(q), length + 1 - static_cast<int64_t>(tokens.size()));
      const size_t at = tokens.size();
      tokens.resize(at + static_cast<size_t>(n));
      if (absl::Status st = s.heldout->read(q, 0, n, tokens.data() + at); !st.ok()) return st;
    }
    for (eval::PplWindow& w : eval::document_windows(tokens, length, 0)) windows.push_back(std::move(w));
  }
  if (windows.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--length ", length, ": no held-out document has ", length + 1, " tokens"));
  }
  const Batch batch = eval::window_batch(windows, length);
  const int64_t width = eval::default_bucket_width(length);

  // The training layout: rows of every query against the whole sequence,
  // heads over tp and query rows over cp (attention_stats.h).
  absl::StatusOr<RecipeLayout> layout = recipe_layout(s.recipe.proto, world);
  if (!layout.ok()) return layout.status();
  int64_t step = 0;
  absl::StatusOr<LlamaModel> model = load_eval_model(s.recipe, s.checkpoint, layout->par, /*recompute=*/false, step);
  if (!model.ok()) return model.status();
  absl::StatusOr<eval::AttentionStats> stats = eval::attention_stats(*model, batch, width);
  if (!stats.ok()) return stats.status();
  std::optional<eval::HeadBucketTable> js;
  std::string reference;
  if (!a.reference.empty()) {
    absl::StatusOr<std::string> dir = resolve_checkpoint_dir(a.reference);
    if (!dir.ok()) return absl::NotFoundError(absl::StrCat("--reference ", dir.status().message()));
    reference = *dir;
    absl::StatusOr<LoadedRecipe> rr = load_recipe((fs::path(reference) / "recipe.yaml").string(), {});
    if (!rr.ok()) return absl::InvalidArgumentError(absl::StrCat("--reference: ", rr.status().message()));
    int64_t ref_step = 0;
    absl::StatusOr<LlamaModel> ref = load_eval_model(*rr, reference, layout->par, /*recompute=*/false, ref_step);
    if (!ref.ok()) return absl::Status(ref.status().code(), absl::StrCat("--reference: ", ref.status().message()));
    absl::StatusOr<eval::HeadBucketTable> j = eval::attention_js_divergence(*model, *ref, batch, width);
    if (!j.ok()) return absl::InvalidArgumentError(absl::StrCat("--reference: ", j.status().message()));
    js = *std::move(j);
  }
  if (world.rank() != 0) return absl::OkStatus();  // every rank holds the summed tables

  absl::StatusOr<std::ofstream> csv = open_csv(s.out, "attention.csv", kAttentionCsvHeader);
  if (!csv.ok()) return csv.status();
  const int64_t layers = stats->entropy.layers(), heads = stats->entropy.heads();
  const std::vector<eval::PositionBucket>& buckets = stats->entropy.buckets();
  auto rows = [&](const eval::HeadBucketTable& t, const char* metric, const std::string& ref) {
    for (int64_t l = 0; l < layers; ++l)
      for (int64_t h = -1; h < heads; ++h)
        for (int64_t b = -1; b < static_cast<int64_t>(buckets.size()); ++b) {
          if (b >= 0 && t.rows(l, h < 0 ? 0 : h, b) == 0) continue;
          *csv << absl::StrFormat("%s,%d,%d,%d,%d,%s,%s,%.8g,%s\n", eval::csv_field(s.run), step, length, l, h,
                                  b < 0 ? std::string("all") : buckets[static_cast<size_t>(b)].label, metric,
                                  t.mean(l, h, b), eval::csv_field(ref));
        }
  };
  rows(stats->entropy, "entropy", "");
  rows(stats->distance, "distance", "");
  if (js) rows(*js, "js_divergence", reference);
  csv->close();
  if (!*csv) return absl::DataLossError(absl::StrCat(s.out, "/attention.csv: write failed"));

  out << absl::StrFormat("attention of %s (step %d), %d window(s) of %d tokens%s\n", s.checkpoint, step,
                         windows.size(), length, js ? absl::StrCat(", reference ", reference) : "");
  out << absl::StrFormat("%6s %12s %12s%s\n", "layer", "entropy", "distance", js ? "  js_divergence" : "");
  for (int64_t l = 0; l < layers; ++l) {
    out << absl::StrFormat("%6d %12.4f %12.2f", l, stats->entropy.mean(l, -1), stats->distance.mean(l, -1));
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
  std::ostringstream discard;
  std::ostream& rank0_out = world.comm().rank() == 0 ? out : discard;
  const absl::Status st = a->what == "ppl" ? run_ppl(*a, *s, world.comm(), rank0_out)
                                           : run_attention(*a, *s, world.comm(), rank0_out);
  if (!st.ok()) {
    if (world.comm().size() > 1) world.comm().abort(absl::StrCat("rotor eval ", a->what, ": ", st.message()));
    err << "rotor eval " << a->what << ": " << st.message() << "\n";
    return exit_status(st);
  }
  return 0;
}

}  // namespace rotor
