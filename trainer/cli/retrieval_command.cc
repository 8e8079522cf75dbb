// `rotor eval passkey|needle`. See retrieval_command.h.
#include "trainer/cli/retrieval_command.h"

#include <filesystem>
#include <memory>
#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "data/tokenizer.h"
#include "eval/retrieval.h"
#include "parallel/world.h"
#include "trainer/recipe/convert.h"
#include "trainer/cli/args.h"
#include "trainer/loading.h"
#include "trainer/recipe/recipe.h"
#include "kernels/status.h"

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
    ROTOR_ASSIGN_OR_RETURN(std::string v, option_value(w, args, i));
    if (name == "--checkpoint") {
      a.checkpoint = v;
    } else if (name == "--set") {
      a.sets.push_back(v);
    } else if (name == "--out") {
      a.out = v;
    } else if (name == "--lengths") {
      ROTOR_ASSIGN_OR_RETURN(std::vector<int64_t> l, parse_ints(name, v));
      a.lengths = std::move(l);
    } else if (name == "--depths") {
      ROTOR_ASSIGN_OR_RETURN(std::vector<double> d, parse_depths(name, v));
      a.depths = std::move(d);
    } else if (name == "--seed") {
      if (!absl::SimpleAtoi(v, &a.seed)) {
        return absl::InvalidArgumentError(absl::StrCat("--seed: '", v, "' is not a non-negative integer"));
      }
    } else {
      ROTOR_ASSIGN_OR_RETURN(std::vector<int64_t> n, parse_ints(name, v));
      if (n.size() != 1) return absl::InvalidArgumentError(absl::StrCat(name, " takes one integer, got '", v, "'"));
      a.trials = n.front();
    }
  }
  if (a.recipe.empty()) return absl::InvalidArgumentError("RECIPE.yaml is required");
  return a;
}

// A haystack dataset too short for a read (kOutOfRange) is an input error too.
int exit_code(const absl::Status& s) { return exit_status(s, {absl::StatusCode::kOutOfRange}); }

// What a grid runs on, read before the model: the recipe, its checkpoint,
// the grid's options, the tokenizer and (needle) the haystack.
struct Inputs {
  LoadedRecipe recipe;
  std::string checkpoint;
  RetrievalOptions options;
  std::unique_ptr<Tokenizer> tokenizer;
  std::vector<int32_t> haystack;
};

// A failure: its message and exit status.
struct Failure {
  absl::Status status;
  int code = 2;
};

std::optional<Failure> read_inputs(RetrievalKind kind, const RetrievalArgs& a, const std::string& prefix,
                                   Inputs& in, std::ostream& err) {
  absl::StatusOr<LoadedRecipe> recipe = load_recipe(a.recipe, a.sets);
  if (!recipe.ok()) return Failure{recipe.status()};
  in.recipe = *std::move(recipe);
  if (absl::Status s = check_single_run(in.recipe); !s.ok()) return Failure{s};
  absl::StatusOr<std::string> ckpt = eval_checkpoint_dir(in.recipe, a.checkpoint);
  if (!ckpt.ok()) return Failure{ckpt.status()};
  in.checkpoint = *ckpt;
  // A staged run: the settings of the stage that saved the checkpoint.
  absl::StatusOr<LoadedRecipe> staged = checkpoint_stage_recipe(in.recipe, in.checkpoint);
  if (!staged.ok()) return Failure{staged.status()};
  in.recipe = *std::move(staged);
  in.options.lengths = a.lengths ? *a.lengths : default_eval_lengths(in.recipe);
  if (a.depths) in.options.depths = *a.depths;
  in.options.trials = a.trials;
  in.options.seed = a.seed;

  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = checkpoint_tokenizer(in.checkpoint, in.recipe);
  if (!tokenizer.ok()) return Failure{tokenizer.status()};
  in.tokenizer = *std::move(tokenizer);
  if (absl::Status s = check_tokenizer_fits(*in.tokenizer, in.recipe); !s.ok()) return Failure{s};

  if (kind != RetrievalKind::kNeedle) return std::nullopt;
  absl::StatusOr<HaystackSource> source = needle_haystack_source(in.recipe);
  if (!source.ok()) return Failure{source.status()};
  if (source->training_data) {
    err << prefix << "no data.heldout in the recipe: the haystack is the training data " << source->path
        << " (text the model has seen)\n";
  }
  absl::StatusOr<std::vector<int32_t>> h = read_needle_haystack(source->path, in.options.lengths);
  if (!h.ok()) return Failure{h.status(), exit_code(h.status())};
  in.haystack = *std::move(h);
  return std::nullopt;
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
  Inputs in;
  if (std::optional<Failure> f = read_inputs(rk, *a, prefix, in, err)) return fail(f->status, f->code);

  // The training layout (recompute_answerer in eval/retrieval.h when tp or cp > 1).
  ProcessWorld world;
  if (absl::StatusOr<Device> d = world.use_device(recipe_device_type(in.recipe.proto)); !d.ok()) {
    return fail(d.status(), 1);
  }
  RankZeroStream rank0(world.comm(), out);
  auto fail_all = [&](const absl::Status& s, int code) {
    if (world.comm().size() > 1) world.comm().abort(absl::StrCat(prefix, s.message()));
    return fail(s, code);
  };
  absl::StatusOr<LaidOutModel> m = load_laid_out_model(in.recipe, in.checkpoint, world.comm(), /*recompute=*/true);
  if (!m.ok()) return fail_all(m.status(), exit_code(m.status()));
  absl::StatusOr<Answerer> answer = greedy_answerer(m->model, in.tokenizer->eos_id());
  if (!answer.ok()) return fail_all(answer.status(), 2);
  const std::string run = run_name(in.recipe.proto.run().dir());
  const std::string csv = (fs::path(eval_out_dir(in.recipe, a->out)) / (kind + ".csv")).string();

  rank0.get() << absl::StrFormat("%s: run %s, checkpoint %s (step %d), %d lengths x %d depths x %d trials\n",
                                 kind, run, in.checkpoint, m->step, in.options.lengths.size(),
                                 in.options.depths.size(), in.options.trials);
  absl::StatusOr<std::vector<RetrievalCell>> cells = run_retrieval_grid(
      rk, *in.tokenizer, *answer, in.options, in.haystack, [&](const RetrievalCell& c) {
        rank0.get() << absl::StrFormat("%s length %d depth %g: %d/%d passed (%.2f), mean entropy %.4f\n", kind,
                                       c.length, c.depth, c.passed, c.trials, c.pass_rate, c.mean_entropy);
        rank0.get().flush();
      });
  if (!cells.ok()) return fail_all(cells.status(), exit_code(cells.status()));
  if (world.comm().rank() != 0) return 0;
  if (absl::Status s = write_retrieval_csv(csv, run, m->step, *cells); !s.ok()) return fail(s, 1);
  out << "wrote " << csv << "\n";
  return out ? 0 : 1;
}

}  // namespace rotor
