// Recipes of `rotor train`: YAML files checked against the protobuf schema in
// trainer/recipe/recipe.proto (that file lists every key, its type and its default).
//
//   absl::StatusOr<LoadedRecipe> r = load_recipe("recipes/demo/base.yaml", {"train.lr=1e-3"});
//   for (const NamedRun& run : *expand_sweep(*r)) ... run.recipe.proto.run().dir() ...
//   write recipe_to_yaml(r->proto) into the run directory.
//
// Loading: `base: other.yaml` (relative to the recipe's directory) is loaded
// first and the recipe's keys override it, key by key (sections merge, lists
// replace, `key: null` unsets an inherited key); chains are allowed, a cycle is
// an error. Then each override "dotted.key=VALUE" (VALUE parsed as YAML, e.g.
// `--set data.datasets=[{path: a}]`, `--set eval.lengths=[1024,2048]`) is
// applied in order through the same schema walker. Then defaults are filled in
// (with_defaults: every default of recipe.proto, in the resolved proto only),
// everything is validated and converted to typed configs (convert.h).
//
// Errors name the file, line and column (1-based) and the dotted key:
//   "r.yaml:7:3: unknown key 'train.lrr' (did you mean 'train.lr'?)"
//   "r.yaml:9:10: train.steps: expected an integer, got 'ten'"
//   "r.yaml:4:7: parallel.tp (3) must divide model.num_attention_heads (4)"
// For --set the location reads "--set KEY"; for a combination the location is
// that of the first key named that has one.
//
// Validated (beyond the types): required keys (model sizes without
// model.init_from, data.datasets, data.sequence_length, train.steps, train.lr,
// exactly one of train.global_batch_tokens / train.global_batch_size),
// LlamaConfig::validate, the rope and logit_scale sections through their typed
// conversions (trainer/recipe/convert.h) and validate_rope /
// validate_logit_scale, ranges (positive sizes, betas in [0, 1), weights > 0,
// ...), and the combinations: tp divides num_attention_heads,
// num_key_value_heads and intermediate_size; with cp > 1 sequence_length is a
// multiple of 2*cp; global_batch_tokens is a multiple of micro_batch_size *
// sequence_length (global_batch_size of micro_batch_size); lr >= min_lr;
// warmup_steps <= steps; data.tokenizer bytes needs vocab_size >= 256.
// Checks that need the world size (dp dividing the batch) belong to the trainer.
//
// Stages: `stages: [{name, steps, set: {dotted.key: VALUE, ...}}, ...]`
// (trainer/recipe/stages.cc). Each stage is the recipe's given keys (after
// base: and --set, before the defaults) with the stage's own `set` applied in
// order (not the previous stage's), and its train.steps the stage's steps;
// it is validated as a
// training recipe of its own, errors reading "LOC: stage NAME: ..." with LOC
// the set value's location for a key the stage sets. The run's train.steps
// is the sum of the stages' steps (given, it must equal it). A stage cannot
// set model.*, train.steps, train.seed, run.dir or device (the model, the
// data order and the run are the run's). `--set stages.NAME.KEY=VALUE` and
// `sweep: {stages.NAME.KEY: [...]}` change one stage's key
// (stages.NAME.steps its steps); a --set or sweep of a key that a stage sets
// is an error (the stage would silently override it). Names are unique,
// [A-Za-z0-9_-]+.
//
// With model.init_from and no head_dim (nor hidden_size and
// num_attention_heads) in the recipe, RoPE cannot be checked against the head
// size here: LoadedRecipe::head_dim_known is false and the trainer must call
// validate_rope(rope, head_dim) once it has read the checkpoint's config.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/config.h"
#include "model/llama.h"
#include "model/rope.h"
#include "trainer/recipe/recipe.pb.h"

namespace rotor {

// Where each key got its value: dotted key ("train.lr", "data.datasets[0].path")
// -> "FILE:LINE:COL" or "--set KEY".
using RecipeSourceMap = std::map<std::string, std::string>;

// What a recipe is loaded for, i.e. which keys it must have. Every mode
// reads the whole schema (same keys, same errors, same --set) and checks the
// values given.
enum class RecipeMode {
  kTrain,  // a training run: the required keys listed above
  kRope,   // `rotor rope`: only model.head_dim, given or derived from
           // model.hidden_size / model.num_attention_heads; the model sizes are
           // validated only when model.hidden_size is given
  kModel,  // a checkpoint's recipe.yaml read for its model (scoring, export,
           // evaluation): as kRope, so an imported checkpoint's recipe needs
           // no data or train section; the callers check the model sizes
};

struct LoadedStage;

struct LoadedRecipe {
  recipe::Recipe given;   // what the files and overrides said (no defaults, no base)
  recipe::Recipe proto;   // resolved: `given` plus every default; what recipe_to_yaml writes
  LlamaConfig model;      // llama_config(proto.model) with rope_theta = rope.theta
  RopeConfig rope;        // rope_config(proto.rope)
  LogitScaleConfig logit_scale;  // logit_scale_config(proto.logit_scale)
  bool head_dim_known = true;  // false: see the header comment (init_from)
  std::string path;            // the recipe file as given to load_recipe
  RecipeSourceMap where;
  // A recipe with `stages:`: each stage resolved and validated on its own
  // (see "Stages" above); empty without stages.
  std::vector<LoadedStage> stages;

  // The model options the recipe sets (rope, logit_scale); the caller adds
  // recompute, parallel layout and dtype.
  LlamaOptions model_options() const {
    LlamaOptions o;
    o.rope = rope;
    o.logit_scale = logit_scale;
    return o;
  }
  // model_options() plus what train: says of the model's step: recompute,
  // tile_tokens, offload_activations and precision (the caller adds the
  // device and the parallel layout). What `rotor train` builds its model
  // with and the memory model (trainer/memory_plan.h) predicts.
  // (Inline, as model_options: the recipe library itself builds no model
  // options, so the fuzz targets link it without the model.)
  LlamaOptions training_options() const {
    LlamaOptions o = model_options();
    const recipe::TrainSection& t = proto.train();
    o.recompute = t.recompute() == recipe::TrainSection::full        ? Recompute::kFull
                  : t.recompute() == recipe::TrainSection::selective ? Recompute::kSelective
                                                                      : Recompute::kNone;
    o.tile_tokens = t.tile_tokens();
    o.offload_activations = t.offload_activations();
    o.dtype = t.precision() == recipe::TrainSection::bf16 ? DType::kBF16 : DType::kF32;
    return o;
  }
};

// One stage of a staged recipe: the recipe's keys with the stage's `set`
// applied, train.steps = the stage's steps, no stages.
struct LoadedStage {
  std::string name;
  int64_t first_step = 1;  // the run's step that begins the stage (1-based)
  int64_t steps = 0;
  LoadedRecipe recipe;

  int64_t last_step() const { return first_step + steps - 1; }
};

// The stages a run trains: the recipe's stages, or for a recipe without
// stages one stage named "" that is the recipe itself (steps 1..train.steps).
std::vector<LoadedStage> training_stages(const LoadedRecipe& recipe);

// The stage named `name`; NotFound lists the stage names (or says the recipe
// has none).
absl::StatusOr<const LoadedStage*> find_stage(const LoadedRecipe& recipe, const std::string& name);

struct NamedRun {
  std::string name;  // "<stem>-<key>=<value>-..." (sanitized), or "<stem>" without a sweep
  LoadedRecipe recipe;  // resolved, validated, no sweep, run.dir = <run.dir>/<name>
  // The swept keys and this run's values (YAML text), in axis order.
  std::vector<std::pair<std::string, std::string>> values = {};
};

// `path` empty: no recipe file, the overrides alone (`rotor rope --set ...`).
absl::StatusOr<LoadedRecipe> load_recipe(const std::string& path,
                                         const std::vector<std::string>& overrides,
                                         RecipeMode mode = RecipeMode::kTrain);

// The grid of `sweep:` (first axis slowest), each run validated on its own; a
// recipe without a sweep gives one run, named by the stem, with run.dir unchanged.
// A grid of more than 1000 runs is refused (an error at the sweep: key).
// String values must be valid UTF-8 (so the resolved recipe.yaml names the
// same paths); anything else is an error at the value's file:line:col.
absl::StatusOr<std::vector<NamedRun>> expand_sweep(const LoadedRecipe& recipe);

// Values and combinations of a resolved recipe (defaults filled in); errors
// name the keys, without locations.
absl::Status validate(const recipe::Recipe& resolved);

// The recipe as YAML: sections in schema order, only the fields present,
// numbers in shortest round-trip form; load_recipe of it gives the same proto.
std::string recipe_to_yaml(const recipe::Recipe& recipe);

// The file name without directory and extension ("recipes/demo/base.yaml" -> "base").
std::string recipe_stem(const std::string& path);

namespace recipe_internal {
// The reflection walker (schema.cc). `key` is the dotted path of `node`.
// apply_yaml sets the fields of `message` named by the keys of the mapping `node`
// (`file` "": a value of --set or a stage's set, every location `location`);
// set_path sets one dotted key to `value`. Both record locations in `where`.
absl::Status apply_yaml(const YAML::Node& node, google::protobuf::Message& message,
                        const std::string& key, const std::string& file, RecipeSourceMap& where,
                        const std::string& location = "");
absl::Status set_path(google::protobuf::Message& message, const std::string& dotted,
                      const YAML::Node& value, const std::string& location,
                      RecipeSourceMap& where);
std::string yaml_flow(const YAML::Node& node);
// "FILE:LINE:COL" (1-based) of `mark` in `file`; `file` alone for a null mark.
std::string mark_text(const std::string& file, const YAML::Mark& mark);
// InvalidArgument "LOCATION: MESSAGE" (MESSAGE alone without a location).
absl::Status error_at(const std::string& location, const std::string& message);
// Edit distance <= 2 suggestion among `candidates`, or "".
std::string closest(const std::string& word, const std::vector<std::string>& candidates);
// The dotted keys of the fields of `descriptor`, each prefixed by "prefix.".
std::vector<std::string> field_keys(const google::protobuf::Descriptor* descriptor,
                                    const std::string& prefix);
}  // namespace recipe_internal

}  // namespace rotor
