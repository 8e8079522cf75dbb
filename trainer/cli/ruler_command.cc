// `rotor eval ruler`. See ruler_command.h.
#include "trainer/cli/ruler_command.h"

#include <algorithm>
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
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "data/tokenizer.h"
#include "eval/ruler.h"
#include "eval/ruler_text.h"
#include "kernels/status.h"
#include "parallel/world.h"
#include "trainer/cli/args.h"
#include "trainer/loading.h"
#include "trainer/recipe/convert.h"
#include "trainer/recipe/recipe.h"

namespace rotor {
namespace {

namespace fs = std::filesystem;

constexpr char kPrefix[] = "rotor eval ruler: ";

std::string usage() {
  std::vector<std::string> names;
  for (const ruler::TaskInfo& t : ruler::all_tasks()) names.push_back(t.name);
  return absl::StrCat(
      "usage: rotor eval ruler RECIPE.yaml [--checkpoint DIR] [--set KEY=VALUE ...] [--out DIR]\n"
      "           [--tasks T,...] [--lengths L,...] [--samples N] [--seed N] [--dump FILE]\n"
      "\n"
      "RULER's synthetic long-context tasks, generated in the model's tokens at each length,\n"
      "answered greedily and scored with string_match_all (fraction of expected strings found).\n"
      "  --checkpoint DIR  checkpoint or run directory (default: the latest of run.dir)\n"
      "  --set KEY=VALUE   recipe override (repeatable), e.g. rope.method=dynamic\n"
      "  --out DIR         output directory (default <run.dir>/eval), writes ruler.csv\n"
      "  --tasks T,...     tasks (default: every task that fits each length; a named task\n"
      "                    must fit every length): ", absl::StrJoin(names, ","), "\n",
      "  --lengths L,...   prompt lengths in tokens (default eval.lengths or data.sequence_length)\n"
      "  --samples N       samples per task and length (default 20)\n"
      "  --seed N          seed of the keys, values and words (default 42)\n"
      "  --dump FILE       every sample as a JSON line: task, length, index, input, answers,\n"
      "                    output, score, tokens\n");
}

struct RulerArgs {
  std::string recipe, checkpoint, out, dump;
  std::vector<std::string> sets;
  std::vector<ruler::Task> tasks;
  bool tasks_named = false;  // --tasks given: a length too short for one is an error
  std::optional<std::vector<int64_t>> lengths;
  int64_t samples = 20;
  uint64_t seed = 42;
};

absl::StatusOr<std::vector<int64_t>> parse_positive(const std::string& name, const std::string& value) {
  std::vector<int64_t> out;
  for (absl::string_view word : absl::StrSplit(value, ',')) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(word, &v) || v < 1)
      return absl::InvalidArgumentError(absl::StrCat(name, ": '", word, "' is not a positive integer (in '", value, "')"));
    out.push_back(v);
  }
  return out;
}

absl::Status apply_option(const std::string& name, const std::string& v, RulerArgs& a) {
  if (name == "--checkpoint") {
    a.checkpoint = v;
  } else if (name == "--set") {
    a.sets.push_back(v);
  } else if (name == "--out") {
    a.out = v;
  } else if (name == "--dump") {
    a.dump = v;
  } else if (name == "--tasks") {
    ROTOR_ASSIGN_OR_RETURN(a.tasks, ruler::parse_tasks(v));
    a.tasks_named = true;
  } else if (name == "--lengths") {
    ROTOR_ASSIGN_OR_RETURN(std::vector<int64_t> l, parse_positive(name, v));
    a.lengths = std::move(l);
  } else if (name == "--seed") {
    if (!absl::SimpleAtoi(v, &a.seed))
      return absl::InvalidArgumentError(absl::StrCat("--seed: '", v, "' is not a non-negative integer"));
  } else {  // --samples
    ROTOR_ASSIGN_OR_RETURN(std::vector<int64_t> n, parse_positive(name, v));
    if (n.size() != 1) return absl::InvalidArgumentError(absl::StrCat(name, " takes one integer, got '", v, "'"));
    a.samples = n.front();
  }
  return absl::OkStatus();
}

absl::StatusOr<RulerArgs> parse_args(const std::vector<std::string>& args) {
  RulerArgs a;
  for (const ruler::TaskInfo& t : ruler::all_tasks()) a.tasks.push_back(t.task);
  for (size_t i = 0; i < args.size(); ++i) {
    const OptionWord w = split_option(args[i]);
    const std::string& name = w.name;
    const bool known = name == "--checkpoint" || name == "--set" || name == "--out" || name == "--dump" ||
                       name == "--tasks" || name == "--lengths" || name == "--samples" || name == "--seed";
    if (!known) {
      if (is_option(name)) return absl::InvalidArgumentError(absl::StrCat("unknown option '", name, "'"));
      if (!a.recipe.empty())
        return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", name, "' (one RECIPE.yaml only)"));
      a.recipe = name;
      continue;
    }
    ROTOR_ASSIGN_OR_RETURN(std::string v, option_value(w, args, i));
    ROTOR_RETURN_IF_ERROR(apply_option(name, v, a));
  }
  if (a.recipe.empty()) return absl::InvalidArgumentError("RECIPE.yaml is required");
  return a;
}

// The essay haystack's text (see ruler_command.h), said on `err` when it is
// not held-out text.
absl::StatusOr<std::string> essay_text(const LoadedRecipe& recipe, const Tokenizer& tokenizer,
                                       int64_t longest, std::ostream& err) {
  const int64_t chars = 8 * longest + 4096;  // ~4 characters per SentencePiece token, twice that
  const recipe::DataSection& data = recipe.proto.data();
  if (!data.heldout().empty()) return ruler::read_dataset_text(data.heldout(), tokenizer, chars);
  if (data.datasets_size() > 0) {
    absl::StatusOr<std::string> text = ruler::read_dataset_text(data.datasets(0).path(), tokenizer, chars);
    if (text.ok()) {
      err << kPrefix << "no data.heldout in the recipe: the essay haystack is the training data "
          << data.datasets(0).path() << " (text the model has seen)\n";
      return text;
    }
    err << kPrefix << "no data.heldout in the recipe and the training data does not read ("
        << text.status().message() << "): ";
  } else {
    err << kPrefix << "no data.heldout nor data.datasets in the recipe: ";
  }
  err << "the essay haystack is the packaged public-domain text (Moby-Dick, chapters 1-15)\n";
  return std::string(ruler::packaged_essay_text());
}

struct Inputs {
  LoadedRecipe recipe;
  std::string checkpoint;
  ruler::Options options;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<ruler::Generator> generator;
};

absl::Status read_inputs(const RulerArgs& a, Inputs& in, std::ostream& err) {
  ROTOR_ASSIGN_OR_RETURN(in.recipe, load_recipe(a.recipe, a.sets));
  ROTOR_RETURN_IF_ERROR(check_single_run(in.recipe));
  ROTOR_ASSIGN_OR_RETURN(in.checkpoint, eval_checkpoint_dir(in.recipe, a.checkpoint));
  // A staged run: the settings of the stage that saved the checkpoint.
  ROTOR_ASSIGN_OR_RETURN(in.recipe, checkpoint_stage_recipe(in.recipe, in.checkpoint));
  in.options.tasks = a.tasks;
  in.options.lengths = a.lengths ? *a.lengths : default_eval_lengths(in.recipe);
  in.options.samples = a.samples;
  in.options.fitting_only = !a.tasks_named;
  ROTOR_ASSIGN_OR_RETURN(in.tokenizer, checkpoint_tokenizer(in.checkpoint, in.recipe));
  ROTOR_RETURN_IF_ERROR(check_tokenizer_fits(*in.tokenizer, in.recipe));

  ruler::Resources res;
  const auto needs = [&](bool ruler::TaskInfo::*what) {
    return std::any_of(a.tasks.begin(), a.tasks.end(), [&](ruler::Task t) { return ruler::task_info(t).*what; });
  };
  if (needs(&ruler::TaskInfo::needs_words)) {
    ROTOR_ASSIGN_OR_RETURN(res.words, ruler::load_word_list());
  }
  if (needs(&ruler::TaskInfo::needs_essay)) {
    const int64_t longest = *std::max_element(in.options.lengths.begin(), in.options.lengths.end());
    ROTOR_ASSIGN_OR_RETURN(std::string text, essay_text(in.recipe, *in.tokenizer, longest, err));
    res.essay = ruler::essay_words(text);
  }
  in.generator = std::make_unique<ruler::Generator>(*in.tokenizer, std::move(res), a.seed);
  return ruler::check_options(*in.generator, in.options);
}

}  // namespace

int run_eval_ruler(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  if (asks_for_help(args)) {
    out << usage();
    return 0;
  }
  auto fail = [&](const absl::Status& s, int code) {
    err << kPrefix << s.message() << "\n";
    return code;
  };
  absl::StatusOr<RulerArgs> a = parse_args(args);
  if (!a.ok()) {
    err << kPrefix << a.status().message() << "\n" << usage();
    return 2;
  }
  Inputs in;
  if (absl::Status s = read_inputs(*a, in, err); !s.ok()) return fail(s, exit_status(s, {absl::StatusCode::kOutOfRange}));

  ProcessWorld world;
  if (absl::StatusOr<Device> d = world.use_device(recipe_device_type(in.recipe.proto)); !d.ok()) return fail(d.status(), 1);
  RankZeroStream rank0(world.comm(), out);
  auto fail_all = [&](const absl::Status& s, int code) {
    if (world.comm().size() > 1) world.comm().abort(absl::StrCat(kPrefix, s.message()));
    return fail(s, code);
  };
  absl::StatusOr<LaidOutModel> m = load_laid_out_model(in.recipe, in.checkpoint, world.comm(), /*recompute=*/true);
  if (!m.ok()) return fail_all(m.status(), exit_status(m.status()));
  absl::StatusOr<Answerer> answer = greedy_answerer(m->model, in.tokenizer->eos_id());
  if (!answer.ok()) return fail_all(answer.status(), 2);
  const std::string run = run_name(in.recipe.proto.run().dir());
  const std::string csv = (fs::path(eval_out_dir(in.recipe, a->out)) / "ruler.csv").string();

  std::ofstream dump;
  if (!a->dump.empty() && world.comm().rank() == 0) {
    std::error_code ec;
    if (fs::path(a->dump).has_parent_path()) fs::create_directories(fs::path(a->dump).parent_path(), ec);
    dump.open(a->dump, std::ios::trunc);
    if (!dump) return fail_all(absl::PermissionDeniedError(absl::StrCat(a->dump, ": cannot open for writing")), 1);
  }
  absl::StatusOr<std::vector<ruler::CellKey>> planned = ruler::planned_cells(*in.generator, in.options);
  if (!planned.ok()) return fail_all(planned.status(), 1);
  rank0.get() << absl::StrFormat("ruler: run %s, checkpoint %s (step %d), %d tasks x %d lengths x %d samples\n", run,
                                 in.checkpoint, m->step, in.options.tasks.size(), in.options.lengths.size(),
                                 in.options.samples);
  for (ruler::Task t : in.options.tasks) {  // what fitting_only left out
    std::vector<int64_t> skipped;
    for (int64_t length : in.options.lengths)
      if (std::none_of(planned->begin(), planned->end(),
                       [&](const ruler::CellKey& c) { return c.task == t && c.length == length; }))
        skipped.push_back(length);
    if (!skipped.empty())
      rank0.get() << absl::StrFormat("ruler: %s skipped at %s: shorter than the task's minimum\n",
                                     ruler::task_info(t).name, absl::StrJoin(skipped, ","));
  }
  absl::StatusOr<std::vector<ruler::Cell>> cells = ruler::run(
      *in.generator, *in.tokenizer, *answer, in.options,
      [&](const ruler::Record& r) {
        if (dump.is_open()) dump << ruler::dump_line(r) << "\n" << std::flush;
      },
      [&](const ruler::Cell& c) {
        rank0.get() << absl::StrFormat("ruler %s length %d: %d/%d passed, score %.3f, mean entropy %.4f\n",
                                       ruler::task_info(c.task).name, c.length, c.passed, c.samples, c.pass_rate,
                                       c.mean_entropy);
        rank0.get().flush();
      },
      m->layout.par.dp);
  if (!cells.ok()) return fail_all(cells.status(), exit_status(cells.status()));
  if (world.comm().rank() != 0) return 0;
  if (dump.is_open()) {
    dump.close();
    if (!dump) return fail(absl::DataLossError(absl::StrCat(a->dump, ": write failed")), 1);
    out << "wrote " << a->dump << "\n";
  }
  if (absl::Status s = ruler::write_csv(csv, run, m->step, *cells); !s.ok()) return fail(s, 1);
  out << "wrote " << csv << "\n";
  return out ? 0 : 1;
}

}  // namespace rotor
