// `rotor eval passkey|needle`. See retrieval_command.h.
#include "trainer/cli/retrieval_command.h"

#include <algorithm>
#include <filesystem>
#include <optional>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "data/indexed_dataset.h"
#include "eval/retrieval.h"
#include "trainer/cli/args.h"
#include "trainer/recipe/layout.h"
#include "trainer/recipe/recipe.h"
#include "trainer/loading.h"
#include "parallel/world.h"

namespace rotor {
namespace {

namespace fs = std::filesystem;

std::string usage(const std::string& kind) {
  return absl::StrCat(
      "usage: rotor eval ", kind,
      " RECIPE.yaml [--checkpoint DIR] [--set KEY=VALUE ...] [--out DIR]\n"
      "           [--lengths 256,512] [--depths 0,0.25,0.5,0.75,1] [--trials N] [--seed N]\n"
      "\n",
      kind == "passkey"
          ? "Passkey retrieval: a 5-digit key hidden at each depth of repeated filler text;\n"
            "a trial passes when the greedy answer starts with the key.\n"
          : "Needle in a haystack: a sentence hidden at each depth of real held-out text\n"
            "(data.heldout, else the first dataset); a trial passes when the greedy answer\n"
            "holds at least half of the needle's answer words.\n",
      "  --checkpoint DIR  checkpoint or run directory (default: the latest of run.dir)\n"
      "  --set KEY=VALUE   recipe override (repeatable), e.g. rope.method=dynamic\n"
      "  --out DIR         output directory (default <run.dir>/eval), writes ", kind, ".csv\n"
      "  --lengths L,...   prompt lengths in tokens (default eval.lengths or data.sequence_length)\n"
      "  --depths D,...    insertion depths in [0, 1] (default 0,0.25,0.5,0.75,1)\n"
      "  --trials N        trials per cell (default 5)\n"
      "  --seed N          seed of the keys / haystack offsets (default 1234)\n");
}

struct RetrievalArgs {
  std::string recipe;
  std::string checkpoint;
  std::vector<std::string> sets;
  std::string out;
  std::optional<std::vector<int64_t>> lengths;
  std::optional<std::vector<double>> depths;
  int64_t trials = 5;
  uint64_t seed = 1234;
};

absl::StatusOr<std::vector<int64_t>> parse_ints(const std::string& name, const std::string& value) {
  std::vector<int64_t> out;
  for (absl::string_view word : absl::StrSplit(value, ',')) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(word, &v) || v < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": '", word, "' is not a positive integer (in '", value, "')"));
    }
    out.push_back(v);
  }
  return out;
}

absl::StatusOr<std::vector<double>> parse_depths(const std::string& name, const std::string& value) {
  std::vector<double> out;
  for (absl::string_view word : absl::StrSplit(value, ',')) {
    double v = 0;
    if (!absl::SimpleAtod(word, &v) || !(v >= 0 && v <= 1)) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": '", word, "' is not a depth in [0, 1] (in '", value, "')"));
    }
    out.push_back(v);
  }
  return out;
}

absl::StatusOr<RetrievalArgs> parse_args(const std::vector<std::string>& args) {
  RetrievalArgs a;
  for (size_t i = 0; i < args.size(); ++i) {
    const OptionWord w = split_option(args[i]);
    const std::string& name = w.name;
    const bool known = name == "--checkpoint" || name == "--set" || name == "--out" ||
                       name == "--lengths" || name == "--depths" || name == "--trials" ||
                       name == "--seed";
    if (!known) {
      if (is_option(name)) return absl::InvalidArgumentError(absl::StrCat("unknown option '", name, "'"));
      if (!a.recipe.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("unexpected argument '", name, "' (one RECIPE.yaml only)"));
      }
      a.recipe = name;
      continue;
    }
    absl::StatusOr<std::string> v = option_value(w, args, i);
    if (!v.ok()) return v.status();
    if (name == "--checkpoint") {
      a.checkpoint = *v;
    } else if (name == "--set") {
      a.sets.push_back(*v);
    } else if (name == "--out") {
      a.out = *v;
    } else if (name == "--lengths") {
      absl::StatusOr<std::vector<int64_t>> l = parse_ints(name, *v);
      if (!l.ok()) return l.status();
      a.lengths = *std::move(l);
    } else if (name == "--depths") {
      absl::StatusOr<std::vector<double>> d = parse_depths(name, *v);
      if (!d.ok()) return d.status();
      a.depths = *std::move(d);
    } else if (name == "--seed") {
      if (!absl::SimpleAtoi(*v, &a.seed)) {
        return absl::InvalidArgumentError(absl::StrCat("--seed: '", *v, "' is not a non-negative integer"));
      }
    } else {
      absl::StatusOr<std::vector<int64_t>> n = parse_ints(name, *v);
      if (!n.ok()) return n.status();
      if (n->size() != 1) return absl::InvalidArgumentError(absl::StrCat(name, " takes one integer, got '", *v, "'"));
      a.trials = n->front();
    }
  }
  if (a.recipe.empty()) return absl::InvalidArgumentError("RECIPE.yaml is required");
  return a;
}

// A haystack dataset too short for a read (kOutOfRange) is an input error too.
int exit_code(const absl::Status& s) { return exit_status(s, {absl::StatusCode::kOutOfRange}); }

// The first `want` tokens of the dataset at `prefix` (fewer if it has fewer),
// sequences in order.
absl::StatusOr<std::vector<int32_t>> read_haystack(const std::string& prefix, int64_t want) {
  absl::StatusOr<IndexedDataset> ds = IndexedDataset::open(prefix);
  if (!ds.ok()) return absl::NotFoundError(absl::StrCat("needle haystack: ", ds.status().message()));
  std::vector<int32_t> out;
  for (int64_t i = 0; i < ds->num_sequences() && static_cast<int64_t>(out.size()) < want; ++i) {
    const int64_t n = std::min(ds->sequence_length(i), want - static_cast<int64_t>(out.size()));
    const size_t at = out.size();
    out.resize(at + static_cast<size_t>(n));
    if (absl::Status s = ds->read(i, 0, n, out.data() + at); !s.ok()) {
      return absl::DataLossError(absl::StrCat(prefix, ": ", s.message()));
    }
  }
  return out;
}

}  // namespace

int run_eval_retrieval(const std::string& kind, const std::vector<std::string>& args,
                       std::ostream& out, std::ostream& err) {
  const std::string prefix = absl::StrCat("rotor eval ", kind, ": ");
  if (kind != "passkey" && kind != "needle") {
    err << prefix << "unknown retrieval evaluation (passkey or needle)\n";
    return 2;
  }
  const RetrievalKind rk = kind == "passkey" ? RetrievalKind::kPasskey : RetrievalKind::kNeedle;
  if (asks_for_help(args)) {
    out << usage(kind);
    return 0;
  }
  auto fail = [&](const absl::Status& s, int code) {
    err << prefix << s.message() << "\n";
    return code;
  };
  absl::StatusOr<RetrievalArgs> a = parse_args(args);
  if (!a.ok()) {
    err << prefix << a.status().message() << "\n" << usage(kind);
    return 2;
  }

  absl::StatusOr<LoadedRecipe> recipe = load_recipe(a->recipe, a->sets);
  if (!recipe.ok()) return fail(recipe.status(), 2);
  absl::StatusOr<std::vector<NamedRun>> runs = expand_sweep(*recipe);
  if (!runs.ok()) return fail(runs.status(), 2);
  if (runs->size() != 1) {
    return fail(absl::InvalidArgumentError(absl::StrCat(
                    a->recipe, ": the recipe sweeps ", runs->size(),
                    " runs; evaluate one of them (its run directory holds its recipe.yaml)")),
                2);
  }
  if (!recipe->head_dim_known || !recipe->proto.model().has_hidden_size()) {
    return fail(absl::InvalidArgumentError(absl::StrCat(
                    a->recipe, ": the recipe has no model sizes (model.init_from without sizes)")),
                2);
  }
  const std::string run_dir = recipe->proto.run().dir();
  const std::string run_name = fs::path(run_dir).lexically_normal().filename().string();

  // Options checked before the model and the weights are loaded.
  RetrievalOptions options;
  if (a->lengths) {
    options.lengths = *a->lengths;
  } else if (recipe->proto.eval().lengths_size() > 0) {
    options.lengths.assign(recipe->proto.eval().lengths().begin(), recipe->proto.eval().lengths().end());
  } else {
    options.lengths = {recipe->proto.data().sequence_length()};
  }
  if (a->depths) options.depths = *a->depths;
  options.trials = a->trials;
  options.seed = a->seed;

  absl::StatusOr<std::string> ckpt = resolve_checkpoint_dir(a->checkpoint.empty() ? run_dir : a->checkpoint);
  if (!ckpt.ok()) return fail(ckpt.status(), 2);
  const LoadedRecipe& r = *recipe;
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = checkpoint_tokenizer(*ckpt, r);
  if (!tokenizer.ok()) return fail(tokenizer.status(), 2);
  if ((*tokenizer)->vocab_size() > r.model.vocab_size) {
    return fail(absl::InvalidArgumentError(absl::StrCat(
                    "the tokenizer (", (*tokenizer)->spec(), ") has ", (*tokenizer)->vocab_size(),
                    " ids, more than the model's vocab_size ", r.model.vocab_size)),
                2);
  }

  std::vector<int32_t> haystack;
  if (rk == RetrievalKind::kNeedle) {
    const recipe::DataSection& data = r.proto.data();
    std::string source = data.heldout();
    if (source.empty()) {
      if (data.datasets_size() == 0) {
        return fail(absl::InvalidArgumentError("needle: the recipe names no data.heldout nor data.datasets"), 2);
      }
      source = data.datasets(0).path();
      err << prefix << "no data.heldout in the recipe: the haystack is the training data " << source
          << " (text the model has seen)\n";
    }
    const int64_t longest = *std::max_element(options.lengths.begin(), options.lengths.end());
    absl::StatusOr<std::vector<int32_t>> h = read_haystack(source, 4 * longest);
    if (!h.ok()) return fail(h.status(), exit_code(h.status()));
    if (static_cast<int64_t>(h->size()) < longest) {
      return fail(absl::InvalidArgumentError(absl::StrCat(
                      source, ": holds ", h->size(), " tokens, the needle haystack needs ", longest,
                      " (the longest --lengths)")),
                  2);
    }
    haystack = *std::move(h);
  }

  // The training layout (recompute_answerer in eval/retrieval.h when tp or cp > 1).
  ProcessWorld world;
  std::ostringstream discard;
  std::ostream& rank0 = world.comm().rank() == 0 ? out : discard;
  auto fail_all = [&](const absl::Status& s, int code) {
    if (world.comm().size() > 1) world.comm().abort(absl::StrCat(prefix, s.message()));
    return fail(s, code);
  };
  absl::StatusOr<RecipeLayout> layout = recipe_layout(r.proto, world.comm());
  if (!layout.ok()) return fail_all(layout.status(), 2);
  int64_t step = 0;
  absl::StatusOr<LlamaModel> model = load_eval_model(r, *ckpt, layout->par, /*recompute=*/true, step);
  if (!model.ok()) return fail_all(model.status(), exit_code(model.status()));
  absl::StatusOr<Answerer> answer = greedy_answerer(*model, (*tokenizer)->eos_id());
  if (!answer.ok()) return fail_all(answer.status(), 2);
  const std::string out_dir = a->out.empty() ? (fs::path(run_dir) / "eval").string() : a->out;
  const std::string csv = (fs::path(out_dir) / (kind + ".csv")).string();

  rank0 << absl::StrFormat("%s: run %s, checkpoint %s (step %d), %d lengths x %d depths x %d trials\n",
                           kind, run_name, *ckpt, step, options.lengths.size(), options.depths.size(),
                           options.trials);
  absl::StatusOr<std::vector<RetrievalCell>> cells = run_retrieval_grid(
      rk, **tokenizer, *answer, options, haystack, [&](const RetrievalCell& c) {
        rank0 << absl::StrFormat("%s length %d depth %g: %d/%d passed (%.2f), mean entropy %.4f\n", kind,
                                 c.length, c.depth, c.passed, c.trials, c.pass_rate, c.mean_entropy);
        rank0.flush();
      });
  if (!cells.ok()) return fail_all(cells.status(), exit_code(cells.status()));
  if (world.comm().rank() != 0) return 0;
  if (absl::Status s = write_retrieval_csv(csv, run_name, step, *cells); !s.ok()) return fail(s, 1);
  out << "wrote " << csv << "\n";
  return out ? 0 : 1;
}

}  // namespace rotor
