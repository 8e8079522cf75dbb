// Recipes: base inheritance, overrides, defaults, validation, sweeps. See recipe.h.
#include "trainer/recipe/recipe.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "model/config.h"
#include "trainer/recipe/convert.h"
#include "trainer/recipe/stages.h"
#include "kernels/status.h"

namespace rotor {
namespace {

namespace fs = std::filesystem;
using recipe::Recipe;

// The most runs expand_sweep enumerates.
constexpr uint64_t kMaxSweepRuns = 1000;

using recipe_internal::error_at;
using recipe_internal::mark_text;

absl::StatusOr<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("cannot read recipe '", path, "': ", std::strerror(errno)));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("error reading recipe '", path, "'"));
  return text.str();
}

// Loads `path` (its base first) into `out`. `chain`: the files being loaded, outermost first.
absl::Status load_file(const std::string& path, std::vector<std::string>& chain, Recipe& out,
                       RecipeSourceMap& where) {
  ROTOR_ASSIGN_OR_RETURN(std::string text, read_file(path));
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return error_at(mark_text(path, e.mark), absl::StrCat("YAML syntax error: ", e.msg));
  }
  if (!root.IsDefined() || root.IsNull()) return absl::OkStatus();
  if (!root.IsMap()) return error_at(mark_text(path, root.Mark()), "a recipe is a mapping of sections");
  if (const YAML::Node base = root["base"]; base) {
    const std::string loc = mark_text(path, base.Mark());
    if (!base.IsScalar() || base.Scalar().empty())
      return error_at(loc, absl::StrCat("base: expected a recipe path, got ",
                                        recipe_internal::yaml_flow(base)));
    const fs::path base_path = fs::path(path).parent_path() / base.Scalar();
    std::error_code ec;
    const std::string canonical = fs::weakly_canonical(base_path, ec).string();
    if (std::find(chain.begin(), chain.end(), canonical) != chain.end()) {
      std::vector<std::string> names = chain;
      names.push_back(canonical);
      return error_at(loc, absl::StrCat("base: inheritance cycle: ", absl::StrJoin(names, " -> ")));
    }
    chain.push_back(canonical);
    absl::Status s = load_file(base_path.string(), chain, out, where);
    chain.pop_back();
    if (!s.ok()) return error_at(loc, absl::StrCat("base: ", s.message()));
  }
  if (const YAML::Node stages = root["stages"]; stages)
    ROTOR_RETURN_IF_ERROR(recipe_internal::parse_stages(stages, path, out, where));
  for (const auto& entry : root) {
    const std::string name = entry.first.IsScalar() ? entry.first.Scalar() : "";
    if (name == "base") continue;
    if (name == "sweep") {
      const std::string loc = mark_text(path, entry.second.Mark());
      if (!entry.second.IsMap())
        return error_at(loc, "sweep: expected a mapping of dotted keys to lists of values");
      for (const auto& axis : entry.second) {
        const std::string key = axis.first.Scalar();
        const std::string axis_loc = mark_text(path, axis.first.Mark());
        if (!axis.second.IsSequence() || axis.second.size() == 0)
          return error_at(axis_loc, absl::StrCat("sweep.", key, ": expected a non-empty list"));
        // The key must exist (checked with a null value) and each value must
        // have its type; a stage key needs the stages read so far.
        {
          Recipe probe;
          *probe.mutable_stages() = out.stages();
          RecipeSourceMap ignored;
          if (auto s = recipe_internal::set_path(probe, key, YAML::Node(YAML::NodeType::Null),
                                                 axis_loc, ignored);
              !s.ok())
            return s;
        }
        for (const auto& value : axis.second) {
          Recipe probe;
          *probe.mutable_stages() = out.stages();
          RecipeSourceMap ignored;
          if (auto s = recipe_internal::set_path(probe, key, value,
                                                 mark_text(path, value.Mark()), ignored);
              !s.ok())
            return s;
        }
        recipe::SweepAxis* slot = nullptr;
        for (auto& a : *out.mutable_sweep()) {
          if (a.key() == key) slot = &a;
        }
        if (slot == nullptr) slot = out.add_sweep();
        slot->set_key(key);
        slot->clear_values();
        for (const auto& value : axis.second) slot->add_values(recipe_internal::yaml_flow(value));
        where[absl::StrCat("sweep.", key)] = axis_loc;
      }
      continue;
    }
  }
  // Everything but base and sweep, through the schema walker.
  YAML::Node body(YAML::NodeType::Map);
  for (const auto& entry : root) {
    const std::string name = entry.first.IsScalar() ? entry.first.Scalar() : "";
    if (name != "base" && name != "sweep" && name != "stages") body.force_insert(entry.first, entry.second);
  }
  return recipe_internal::apply_yaml(body, out, "", path, where);
}

// The KEY of a --set "KEY=VALUE" (the whole text, stripped, without '=').
std::string override_key(const std::string& assignment) {
  return std::string(absl::StripAsciiWhitespace(absl::string_view(assignment).substr(0, assignment.find('='))));
}

absl::Status apply_override(const std::string& assignment, Recipe& out, RecipeSourceMap& where) {
  const size_t eq = assignment.find('=');
  const std::string key = override_key(assignment);
  if (eq == std::string::npos || key.empty())
    return error_at("", absl::StrCat("--set expects KEY=VALUE, got '", assignment, "'"));
  const std::string location = absl::StrCat("--set ", key);
  YAML::Node value;
  try {
    value = YAML::Load(assignment.substr(eq + 1));
  } catch (const YAML::Exception& e) {
    return error_at(location, absl::StrCat(key, ": cannot parse '", assignment.substr(eq + 1),
                                           "' as a YAML value: ", e.msg));
  }
  return recipe_internal::set_path(out, key, value, location, where);
}

// The defaults of the rope section (RopeConfig's) for the method it names.
void fill_rope_defaults(recipe::RopeSection& s) {
  const RopeConfig d;
  if (!s.has_method()) s.set_method(rope_method_name(d.method));
  if (!s.has_theta()) s.set_theta(d.theta);
  const absl::StatusOr<RopeMethod> method = parse_rope_method(s.method());
  if (!method.ok()) return;  // reported by validation
  if (*method == RopeMethod::kYarn) {
    if (!s.has_beta_fast()) s.set_beta_fast(d.beta_fast);
    if (!s.has_beta_slow()) s.set_beta_slow(d.beta_slow);
    if (!s.has_truncate()) s.set_truncate(d.truncate);
  }
  if (*method == RopeMethod::kLlama3) {
    if (!s.has_low_freq_factor()) s.set_low_freq_factor(d.low_freq_factor);
    if (!s.has_high_freq_factor()) s.set_high_freq_factor(d.high_freq_factor);
  }
}

// The defaults of the logit_scale section (LogitScaleConfig's) for its kind.
void fill_logit_scale_defaults(recipe::LogitScaleSection& s) {
  const LogitScaleConfig d;
  if (!s.has_kind()) s.set_kind(logit_scale_kind_name(d.kind));
  const absl::StatusOr<LogitScaleKind> kind = parse_logit_scale_kind(s.kind());
  if (!kind.ok()) return;  // reported by validation
  if (*kind == LogitScaleKind::kConstant && !s.has_value()) s.set_value(d.value);
  if (*kind == LogitScaleKind::kLogPosition) {
    if (!s.has_base_length()) s.set_base_length(d.base_length);
    if (!s.has_min()) s.set_min(d.min);
  }
}

// The defaults of the model section (LlamaConfig's), unless the sizes come
// from model.init_from's checkpoint.
void fill_model_defaults(recipe::ModelSection& m) {
  // init_from with the sizes written out (e.g. inherited with base:) is
  // completed and validated like a model trained from scratch.
  if (m.has_init_from() && !m.has_hidden_size()) return;
  const LlamaConfig d;
  if (!m.has_num_key_value_heads() && m.has_num_attention_heads())
    m.set_num_key_value_heads(m.num_attention_heads());
  if (!m.has_head_dim() && m.has_hidden_size() && m.has_num_attention_heads() &&
      m.num_attention_heads() > 0)
    m.set_head_dim(m.hidden_size() / m.num_attention_heads());
  if (!m.has_rms_norm_eps()) m.set_rms_norm_eps(d.rms_norm_eps);
  if (!m.has_max_position_embeddings()) m.set_max_position_embeddings(d.max_position_embeddings);
  if (!m.has_tie_word_embeddings()) m.set_tie_word_embeddings(d.tie_word_embeddings);
  if (!m.has_initializer_range()) m.set_initializer_range(d.initializer_range);
}

void fill_train_defaults(recipe::TrainSection& t) {
  if (!t.has_micro_batch_size()) t.set_micro_batch_size(1);
  if (!t.has_min_lr()) t.set_min_lr(0.0);
  if (!t.has_warmup_steps()) t.set_warmup_steps(0);
  if (!t.has_schedule()) t.set_schedule(recipe::TrainSection::cosine);
  if (!t.has_weight_decay()) t.set_weight_decay(0.1);
  if (!t.has_beta1()) t.set_beta1(0.9);
  if (!t.has_beta2()) t.set_beta2(0.95);
  if (!t.has_grad_clip()) t.set_grad_clip(1.0);
  if (!t.has_recompute()) t.set_recompute(recipe::TrainSection::none);
  if (!t.has_offload_activations()) t.set_offload_activations(false);
  if (!t.has_seed()) t.set_seed(1234);
  if (!t.has_on_nonfinite()) t.set_on_nonfinite(recipe::TrainSection::stop);
  if (!t.has_max_skipped_steps()) t.set_max_skipped_steps(5);
  if (!t.has_precision()) t.set_precision(recipe::TrainSection::f32);
}

// Fills in every default of recipe.proto (the one place that knows them).
Recipe with_defaults(const Recipe& given, const std::string& path) {
  Recipe r = given;
  fill_model_defaults(*r.mutable_model());
  fill_rope_defaults(*r.mutable_rope());
  fill_logit_scale_defaults(*r.mutable_logit_scale());
  auto* data = r.mutable_data();
  for (auto& ds : *data->mutable_datasets())
    if (!ds.has_weight()) ds.set_weight(1.0);
  if (!data->has_document_masking()) data->set_document_masking(false);
  fill_train_defaults(*r.mutable_train());
  if (!r.train().has_tile_tokens())
    r.mutable_train()->set_tile_tokens(default_tile_tokens(r.model().intermediate_size()));
  auto* p = r.mutable_parallel();
  if (!p->has_tp()) p->set_tp(1);
  if (!p->has_cp()) p->set_cp(1);
  if (!p->has_sequence_parallel()) p->set_sequence_parallel(true);
  if (!p->has_zero1()) p->set_zero1(false);
  if (!p->has_ulysses()) p->set_ulysses(1);
  if (!r.checkpoint().has_interval()) r.mutable_checkpoint()->set_interval(0);
  if (!r.checkpoint().has_keep()) r.mutable_checkpoint()->set_keep(0);
  if (!r.eval().has_interval()) r.mutable_eval()->set_interval(0);
  if (!r.eval().has_tokens()) r.mutable_eval()->set_tokens(32768);
  if (!r.run().has_dir()) r.mutable_run()->set_dir(absl::StrCat("runs/", recipe_stem(path)));
  if (!r.run().has_log_interval()) r.mutable_run()->set_log_interval(1);
  if (!r.has_device()) r.set_device(Recipe::cpu);
  return r;
}

// A validation error: `keys` are the dotted keys it is about (the first with a
// known location gives the location).
struct Checker {
  const RecipeSourceMap* where = nullptr;
  const std::string* file = nullptr;
  absl::Status first;
  std::string context = {};  // "stage NAME: " for a stage's recipe
  std::vector<std::string> stage_keys = {};  // the keys the stage sets: their locations first

  std::string locate(std::initializer_list<std::string> keys) const {
    if (where != nullptr) {
      for (const std::string& k : keys)
        for (const std::string& s : stage_keys)
          if (k == s || absl::StartsWith(k, s + ".")) {
            if (auto it = where->find(k); it != where->end()) return it->second;
          }
      for (const std::string& k : keys) {
        if (auto it = where->find(k); it != where->end()) return it->second;
      }
    }
    return file != nullptr ? *file : "";
  }
  void fail(std::initializer_list<std::string> keys, const std::string& message) {
    if (first.ok()) first = error_at(locate(keys), context + message);
  }
  void require(bool ok, std::initializer_list<std::string> keys, const std::string& message) {
    if (!ok) fail(keys, message);
  }
};

void check_positive(Checker& c, bool has, int64_t v, const std::string& key, bool required) {
  if (!has) {
    if (required) c.fail({key}, absl::StrCat(key, " is required"));
    return;
  }
  c.require(v >= 1, {key}, absl::StrCat(key, " must be >= 1, got ", v));
}

void check_model(const recipe::ModelSection& m, bool training, Checker& c) {
  const bool sizes = training && !m.has_init_from();
  if (m.has_init_from()) c.require(!m.init_from().empty(), {"model.init_from"}, "model.init_from is empty");
  check_positive(c, m.has_vocab_size(), m.vocab_size(), "model.vocab_size", sizes);
  check_positive(c, m.has_hidden_size(), m.hidden_size(), "model.hidden_size", sizes);
  check_positive(c, m.has_intermediate_size(), m.intermediate_size(), "model.intermediate_size", sizes);
  check_positive(c, m.has_num_hidden_layers(), m.num_hidden_layers(), "model.num_hidden_layers", sizes);
  check_positive(c, m.has_num_attention_heads(), m.num_attention_heads(),
                 "model.num_attention_heads", sizes);
  check_positive(c, m.has_num_key_value_heads(), m.num_key_value_heads(),
                 "model.num_key_value_heads", false);
  check_positive(c, m.has_head_dim(), m.head_dim(), "model.head_dim", false);
  check_positive(c, m.has_max_position_embeddings(), m.max_position_embeddings(),
                 "model.max_position_embeddings", false);
  if (m.has_rms_norm_eps())
    c.require(m.rms_norm_eps() > 0, {"model.rms_norm_eps"}, "model.rms_norm_eps must be > 0");
  if (m.has_initializer_range())
    c.require(m.initializer_range() > 0, {"model.initializer_range"},
              "model.initializer_range must be > 0");
}

void check_data(const Recipe& r, bool training, Checker& c) {
  const auto& d = r.data();
  if (training)
    c.require(d.datasets_size() > 0, {"data.datasets", "data"}, "data.datasets is required (a list of {path, weight})");
  for (int i = 0; i < d.datasets_size(); ++i) {
    const std::string k = absl::StrCat("data.datasets[", i, "]");
    c.require(d.datasets(i).has_path() && !d.datasets(i).path().empty(), {k + ".path", k},
              absl::StrCat(k, ".path is required"));
    c.require(!d.datasets(i).has_weight() || d.datasets(i).weight() > 0, {k + ".weight", k},
              absl::StrCat(k, ".weight must be > 0"));
  }
  check_positive(c, d.has_sequence_length(), d.sequence_length(), "data.sequence_length", training);
  if (d.has_pose_target_length()) {
    c.require(d.pose_target_length() >= 0, {"data.pose_target_length"},
              absl::StrCat("data.pose_target_length must be >= 0 (0: off), got ", d.pose_target_length()));
    if (d.pose_target_length() > 0 && d.has_sequence_length())
      c.require(d.pose_target_length() >= d.sequence_length(), {"data.pose_target_length", "data.sequence_length"},
                absl::StrCat("data.pose_target_length (", d.pose_target_length(),
                             ") must be >= data.sequence_length (", d.sequence_length(),
                             "): PoSE spreads a sample's positions over the longer target"));
  }
  if (d.has_tokenizer()) {
    const bool spm = absl::StartsWith(d.tokenizer(), "spm:") && d.tokenizer().size() > 4;
    c.require(d.tokenizer() == "bytes" || spm, {"data.tokenizer"},
              absl::StrCat("data.tokenizer: expected 'bytes' or 'spm:PATH', got '", d.tokenizer(), "'"));
    // Only a recipe that says bytes: without data.tokenizer the ids are the data's own.
    if (d.tokenizer() == "bytes" && r.model().has_vocab_size())
      c.require(r.model().vocab_size() >= 256, {"model.vocab_size", "data.tokenizer"},
                absl::StrCat("model.vocab_size (", r.model().vocab_size(),
                             ") must be >= 256 with data.tokenizer bytes"));
  }
}

void check_train(const Recipe& r, bool training, Checker& c) {
  const auto& t = r.train();
  const int64_t len = r.data().sequence_length();
  check_positive(c, t.has_steps(), t.steps(), "train.steps", training);
  if (training || (t.has_global_batch_tokens() && t.has_global_batch_size()))
    c.require(t.has_global_batch_tokens() != t.has_global_batch_size(),
              {"train.global_batch_tokens", "train.global_batch_size", "train"},
              "exactly one of train.global_batch_tokens and train.global_batch_size is required");
  check_positive(c, t.has_global_batch_tokens(), t.global_batch_tokens(), "train.global_batch_tokens", false);
  check_positive(c, t.has_global_batch_size(), t.global_batch_size(), "train.global_batch_size", false);
  check_positive(c, t.has_micro_batch_size(), t.micro_batch_size(), "train.micro_batch_size", false);
  if (!t.has_lr()) {
    if (training) c.fail({"train.lr", "train"}, "train.lr is required");
  } else {
    c.require(t.lr() > 0, {"train.lr"}, absl::StrCat("train.lr must be > 0, got ", t.lr()));
  }
  c.require(t.min_lr() >= 0, {"train.min_lr"}, "train.min_lr must be >= 0");
  if (t.has_lr())
    c.require(t.lr() >= t.min_lr(), {"train.min_lr", "train.lr"},
              absl::StrCat("train.lr (", t.lr(), ") must be >= train.min_lr (", t.min_lr(), ")"));
  c.require(t.warmup_steps() >= 0, {"train.warmup_steps"}, "train.warmup_steps must be >= 0");
  if (t.has_steps())
    c.require(t.warmup_steps() <= t.steps(), {"train.warmup_steps", "train.steps"},
              absl::StrCat("train.warmup_steps (", t.warmup_steps(),
                           ") must be <= train.steps (", t.steps(), ")"));
  c.require(t.weight_decay() >= 0, {"train.weight_decay"}, "train.weight_decay must be >= 0");
  c.require(t.beta1() >= 0 && t.beta1() < 1, {"train.beta1"}, "train.beta1 must be in [0, 1)");
  c.require(t.beta2() >= 0 && t.beta2() < 1, {"train.beta2"}, "train.beta2 must be in [0, 1)");
  c.require(t.grad_clip() >= 0, {"train.grad_clip"}, "train.grad_clip must be >= 0 (0: off)");
  c.require(t.max_skipped_steps() >= 0, {"train.max_skipped_steps"}, "train.max_skipped_steps must be >= 0");
  // No divisibility is asked of the tile: the last tile of a micro-batch may be shorter.
  c.require(t.tile_tokens() >= 1 && t.tile_tokens() <= (int64_t{1} << 24), {"train.tile_tokens"},
            absl::StrCat("train.tile_tokens must be in [1, 16777216] (rows of one MLP tile), got ", t.tile_tokens()));
  const int64_t micro = t.micro_batch_size();
  if (t.has_global_batch_tokens() && len > 0 && micro > 0)
    c.require(t.global_batch_tokens() % (micro * len) == 0,
              {"train.global_batch_tokens", "train.micro_batch_size", "data.sequence_length"},
              absl::StrCat("train.global_batch_tokens (", t.global_batch_tokens(),
                           ") must be a multiple of train.micro_batch_size * data.sequence_length (",
                           micro, " * ", len, ")"));
  if (t.has_global_batch_size() && micro > 0)
    c.require(t.global_batch_size() % micro == 0,
              {"train.global_batch_size", "train.micro_batch_size"},
              absl::StrCat("train.global_batch_size (", t.global_batch_size(),
                           ") must be a multiple of train.micro_batch_size (", micro, ")"));
}

// The multiple every sequence length must be of: each cp rank holds 2 chunks
// of every sequence; with sequence parallelism the tp ranks split those rows again.
int64_t sequence_multiple(const recipe::ParallelSection& p) {
  const int64_t tp = std::max<int64_t>(p.tp(), 1), cp = std::max<int64_t>(p.cp(), 1);
  const bool sp = tp > 1 && p.sequence_parallel();
  return (cp > 1 ? 2 * cp : 1) * (sp ? tp : 1);
}

void check_parallel(const Recipe& r, Checker& c) {
  const auto& p = r.parallel();
  const auto& m = r.model();
  check_positive(c, p.has_tp(), p.tp(), "parallel.tp", false);
  check_positive(c, p.has_cp(), p.cp(), "parallel.cp", false);
  const int64_t tp = std::max<int64_t>(p.tp(), 1), cp = std::max<int64_t>(p.cp(), 1);
  auto tp_divides = [&](bool has, int64_t v, const std::string& key) {
    if (has && v > 0)
      c.require(v % tp == 0, {"parallel.tp", key},
                absl::StrCat("parallel.tp (", tp, ") must divide ", key, " (", v, ")"));
  };
  tp_divides(m.has_num_attention_heads(), m.num_attention_heads(), "model.num_attention_heads");
  // kv heads: divided by tp, or replicated when tp is a multiple of them.
  if (m.has_num_key_value_heads() && m.num_key_value_heads() > 0)
    c.require(m.num_key_value_heads() % tp == 0 || tp % m.num_key_value_heads() == 0,
              {"parallel.tp", "model.num_key_value_heads"},
              absl::StrCat("parallel.tp (", tp, ") must divide model.num_key_value_heads (",
                           m.num_key_value_heads(), ") or be a multiple of it (kv heads replicated)"));
  tp_divides(m.has_intermediate_size(), m.intermediate_size(), "model.intermediate_size");
  tp_divides(m.has_vocab_size(), m.vocab_size(), "model.vocab_size");
  check_positive(c, p.has_ulysses(), p.ulysses(), "parallel.ulysses", false);
  const int64_t u = std::max<int64_t>(p.ulysses(), 1);
  if (u > 1) {
    c.require(cp % u == 0, {"parallel.ulysses", "parallel.cp"},
              absl::StrCat("parallel.ulysses (", u, ") must divide parallel.cp (", cp, ")"));
    // Per tp rank: Hq / tp query heads and Hkv / tp (or one, replicated) kv heads.
    if (m.has_num_attention_heads() && m.num_attention_heads() > 0 && m.num_attention_heads() % tp == 0)
      c.require(m.num_attention_heads() / tp % u == 0, {"parallel.ulysses", "model.num_attention_heads"},
                absl::StrCat("parallel.ulysses (", u, ") must divide the query heads of a tp rank: ",
                             "model.num_attention_heads (", m.num_attention_heads(), ") / parallel.tp (", tp,
                             ") = ", m.num_attention_heads() / tp));
    if (m.has_num_key_value_heads() && m.num_key_value_heads() > 0) {
      const int64_t kv = std::max<int64_t>(1, m.num_key_value_heads() / tp);
      c.require(kv % u == 0 || u % kv == 0, {"parallel.ulysses", "model.num_key_value_heads"},
                absl::StrCat("parallel.ulysses (", u, ") and the kv heads of a tp rank (",
                             "model.num_key_value_heads (", m.num_key_value_heads(), ") / parallel.tp (", tp,
                             ") = ", kv, "): one must divide the other"));
    }
  }
  const bool sp = tp > 1 && p.sequence_parallel();
  const int64_t multiple = sequence_multiple(p);
  const int64_t len = r.data().sequence_length();
  if (multiple > 1 && len > 0)
    c.require(len % multiple == 0, {cp > 1 ? "parallel.cp" : "parallel.tp", "data.sequence_length"},
              absl::StrCat("data.sequence_length (", len, ") must be a multiple of ",
                           cp > 1 ? absl::StrCat("2 * parallel.cp (", 2 * cp, ")") : std::string(),
                           cp > 1 && sp ? " times " : "",
                           sp ? absl::StrCat("parallel.tp (", tp, ") with sequence parallelism") : std::string()));
}

void check_run(const Recipe& r, Checker& c) {
  c.require(r.checkpoint().interval() >= 0, {"checkpoint.interval"}, "checkpoint.interval must be >= 0");
  c.require(r.checkpoint().keep() >= 0, {"checkpoint.keep"}, "checkpoint.keep must be >= 0");
  check_positive(c, r.run().has_log_interval(), r.run().log_interval(), "run.log_interval", false);
  if (r.run().has_peak_tflops())
    c.require(r.run().peak_tflops() > 0, {"run.peak_tflops"}, "run.peak_tflops must be > 0");
  check_positive(c, r.eval().has_tokens(), r.eval().tokens(), "eval.tokens", false);
  c.require(r.eval().interval() >= 0, {"eval.interval"}, "eval.interval must be >= 0");
  for (int i = 0; i < r.eval().lengths_size(); ++i)
    c.require(r.eval().lengths(i) >= 1, {absl::StrCat("eval.lengths[", i, "]"), "eval.lengths"},
              absl::StrCat("eval.lengths[", i, "] must be >= 1"));
  // Held-out windows are sharded like training sequences.
  const int64_t multiple = sequence_multiple(r.parallel());
  for (int i = 0; i < r.eval().lengths_size(); ++i)
    if (multiple > 1 && r.eval().lengths(i) >= 1)
      c.require(r.eval().lengths(i) % multiple == 0, {absl::StrCat("eval.lengths[", i, "]"), "eval.lengths"},
                absl::StrCat("eval.lengths[", i, "] (", r.eval().lengths(i), ") must be a multiple of ",
                             multiple, ", as data.sequence_length (parallel.cp and parallel.tp)"));
  c.require(!r.run().dir().empty(), {"run.dir"}, "run.dir is empty");
}

// Values and combinations of a resolved recipe; `training`: the keys a
// training run needs are required.
void check_recipe(const Recipe& r, bool training, Checker& c) {
  check_model(r.model(), training, c);
  check_data(r, training, c);
  check_train(r, training, c);
  check_parallel(r, c);
  check_run(r, c);
}

// The rope and logit_scale sections as typed configs, checked against `head_dim`.
absl::Status convert_rope(const Recipe& r, int64_t head_dim, RopeConfig& rope,
                          LogitScaleConfig& logit_scale) {
  ROTOR_ASSIGN_OR_RETURN(RopeConfig rc, rope_config(r.rope()));
  ROTOR_ASSIGN_OR_RETURN(LogitScaleConfig lc, logit_scale_config(r.logit_scale()));
  ROTOR_RETURN_IF_ERROR(validate_rope(rc, head_dim));
  ROTOR_RETURN_IF_ERROR(validate_logit_scale(lc));
  rope = std::move(rc);
  logit_scale = std::move(lc);
  return absl::OkStatus();
}

// Location of an error message from code that names keys but has no marks.
std::string locate_message(const std::string& message, const RecipeSourceMap& where,
                           const std::string& file) {
  size_t best = std::string::npos, best_size = 0;
  std::string loc = file;
  auto is_key_char = [](char ch) {
    return ch == '.' || ch == '_' || ch == '[' || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
  };
  for (const auto& [key, location] : where) {
    for (size_t at = message.find(key); at != std::string::npos; at = message.find(key, at + 1)) {
      const size_t end = at + key.size();
      const bool whole = (at == 0 || !is_key_char(message[at - 1])) &&
                         (end == message.size() || !is_key_char(message[end]));
      if (!whole) continue;
      if (at < best || (at == best && key.size() > best_size)) {
        best = at, best_size = key.size(), loc = location;
      }
      break;
    }
  }
  return loc;
}

// The model's sizes against LlamaConfig::validate, the error located at the
// model key it names.
absl::Status check_model_config(const LoadedRecipe& out, const std::string& context) {
  const absl::Status s = out.model.validate();
  if (s.ok()) return s;
  const std::string msg = absl::StrCat("model: ", s.message());
  RecipeSourceMap model_keys;
  for (const auto& [key, location] : out.where)
    if (absl::StartsWith(key, "model.")) model_keys[key.substr(6)] = location;
  return error_at(locate_message(msg, model_keys, out.path), context + msg);
}

// The sum of the stages' steps: a staged run's train.steps.
int64_t stage_steps(const Recipe& given) {
  int64_t total = 0;
  for (const recipe::Stage& stage : given.stages()) total += stage.steps();
  return total;
}

absl::Status finish_stages(LoadedRecipe& out, RecipeMode mode);

// given -> LoadedRecipe: defaults, validation, typed configs. `context`:
// "stage NAME: " when `given` is a stage's recipe, whose set keys are
// `stage_keys` (their locations come first in errors).
absl::StatusOr<LoadedRecipe> finish(Recipe given, const std::string& path, RecipeSourceMap where,
                                    RecipeMode mode, const std::string& context = "",
                                    std::vector<std::string> stage_keys = {}) {
  LoadedRecipe out;
  out.path = path;
  out.proto = with_defaults(given, path);
  const bool staged = given.stages_size() > 0;
  out.given = std::move(given);
  out.where = std::move(where);
  Checker c{&out.where, &out.path, absl::OkStatus(), context, std::move(stage_keys)};
  const auto& gm = out.given.model();
  if (!gm.has_init_from() && !gm.has_head_dim() && gm.has_num_attention_heads() &&
      gm.num_attention_heads() > 0 && gm.has_hidden_size())
    c.require(gm.hidden_size() % gm.num_attention_heads() == 0,
              {"model.num_attention_heads", "model.hidden_size"},
              absl::StrCat("model.hidden_size (", gm.hidden_size(),
                           ") must be a multiple of model.num_attention_heads (",
                           gm.num_attention_heads(), ") when model.head_dim is not given"));
  // A staged recipe's own keys need not make a training run (a stage may
  // give data.sequence_length, say): each stage is checked as one below.
  check_recipe(out.proto, mode == RecipeMode::kTrain && !staged, c);
  if (!c.first.ok()) return c.first;
  if (staged && !out.given.train().has_steps())  // after the checks: the schedule is the stages'
    out.proto.mutable_train()->set_steps(stage_steps(out.given));

  const auto& m = out.proto.model();
  out.model = llama_config(m);
  // Without init_from a training recipe has the sizes (checked above).
  if (m.has_hidden_size()) {
    ROTOR_RETURN_IF_ERROR(check_model_config(out, context));
  }
  out.head_dim_known = m.has_head_dim();
  int64_t head_dim = m.head_dim();
  if (!out.head_dim_known) {
    if (mode != RecipeMode::kTrain) {
      c.fail({"model"}, "model.head_dim is required (in the recipe's model section or --set model.head_dim=128)");
      return c.first;
    }
    // init_from without sizes: a placeholder, see recipe.h.
    const int n = std::max(out.proto.rope().short_factor_size(), out.proto.rope().long_factor_size());
    head_dim = n > 0 ? 2 * n : 128;
  }
  if (absl::Status s = convert_rope(out.proto, head_dim, out.rope, out.logit_scale); !s.ok()) {
    const std::string msg(s.message());
    return error_at(locate_message(msg, out.where, out.path), context + msg);
  }
  out.model.rope_theta = out.rope.theta;
  if (staged) ROTOR_RETURN_IF_ERROR(finish_stages(out, mode));
  return out;
}

// The run's steps against the stages', then each stage as a recipe of its own.
absl::Status finish_stages(LoadedRecipe& out, RecipeMode mode) {
  const Recipe& given = out.given;
  const int64_t total = stage_steps(given);
  if (given.train().has_steps() && given.train().steps() != total) {
    const auto it = out.where.find("train.steps");
    return error_at(it != out.where.end() ? it->second : out.path,
                    absl::StrCat("train.steps (", given.train().steps(), ") must equal the sum of the stages' steps (",
                                 total, "), or be left out"));
  }
  int64_t first = 1;
  for (int i = 0; i < given.stages_size(); ++i) {
    const recipe::Stage& stage = given.stages(i);
    RecipeSourceMap where = out.where;
    ROTOR_ASSIGN_OR_RETURN(Recipe r, recipe_internal::stage_recipe(given, i, where));
    std::vector<std::string> keys;
    for (const recipe::StageSet& e : stage.set()) keys.push_back(e.key());
    ROTOR_ASSIGN_OR_RETURN(LoadedRecipe loaded, finish(std::move(r), out.path, std::move(where), mode,
                                                       absl::StrCat("stage ", stage.name(), ": "), std::move(keys)));
    out.stages.push_back(LoadedStage{stage.name(), first, stage.steps(), std::move(loaded)});
    first += stage.steps();
  }
  // A dataset's data position carries over between stages in the unit of its
  // packing (trainer/data_stream.h), so its packing cannot change.
  std::map<std::string, std::pair<std::string, recipe::Dataset::Packing>> packing;  // path -> (stage, packing)
  for (const LoadedStage& stage : out.stages) {
    const auto& datasets = stage.recipe.proto.data().datasets();
    for (int d = 0; d < datasets.size(); ++d) {
      const recipe::Dataset& ds = datasets[d];
      const auto p = ds.packing() == recipe::Dataset::whole ? recipe::Dataset::whole : recipe::Dataset::concatenate;
      const auto [it, inserted] = packing.emplace(ds.path(), std::make_pair(stage.name, p));
      if (inserted || it->second.second == p) continue;
      const std::string key = absl::StrCat("data.datasets[", d, "].packing");
      const auto loc = stage.recipe.where.find(key);
      return error_at(loc != stage.recipe.where.end() ? loc->second : out.path,
                      absl::StrCat("stage ", stage.name, ": ", key, " of ", ds.path(), " (",
                                   recipe::Dataset::Packing_Name(p), ") differs from stage ", it->second.first, "'s (",
                                   recipe::Dataset::Packing_Name(it->second.second),
                                   "): a dataset keeps its packing across stages, so that its data continues"));
    }
  }
  return absl::OkStatus();
}

std::string sanitize(const std::string& s) {
  std::string out;
  for (char ch : s) {
    const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                    (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-' || ch == '=';
    out += ok ? ch : '_';
  }
  return out;
}

}  // namespace

std::string recipe_stem(const std::string& path) { return fs::path(path).stem().string(); }

absl::StatusOr<LoadedRecipe> load_recipe(const std::string& path,
                                         const std::vector<std::string>& overrides,
                                         RecipeMode mode) {
  Recipe given;
  RecipeSourceMap where;
  if (!path.empty()) {
    std::error_code ec;
    std::vector<std::string> chain = {fs::weakly_canonical(path, ec).string()};
    ROTOR_RETURN_IF_ERROR(load_file(path, chain, given, where));
  }
  for (const std::string& assignment : overrides) {
    ROTOR_RETURN_IF_ERROR(apply_override(assignment, given, where));
  }
  // A --set of a key that a stage sets would not reach that stage.
  for (const std::string& assignment : overrides) {
    const std::string key = override_key(assignment);
    if (!absl::StartsWith(key, "stages."))
      ROTOR_RETURN_IF_ERROR(recipe_internal::check_not_staged(given, key, absl::StrCat("--set ", key), "--set"));
  }
  return finish(std::move(given), path, std::move(where), mode);
}

std::vector<LoadedStage> training_stages(const LoadedRecipe& recipe) {
  if (!recipe.stages.empty()) return recipe.stages;
  return {LoadedStage{"", 1, recipe.proto.train().steps(), recipe}};
}

absl::StatusOr<const LoadedStage*> find_stage(const LoadedRecipe& recipe, const std::string& name) {
  std::vector<std::string> names;
  for (const LoadedStage& s : recipe.stages) {
    if (s.name == name) return &s;
    names.push_back(s.name);
  }
  if (names.empty()) return absl::NotFoundError(absl::StrCat("no stage '", name, "': the recipe has no stages"));
  return absl::NotFoundError(absl::StrCat("no stage '", name, "' (stages: ", absl::StrJoin(names, ", "), ")"));
}

absl::Status validate(const Recipe& resolved) {
  Checker c;
  check_recipe(resolved, /*training=*/true, c);
  if (!c.first.ok()) return c.first;
  const auto& m = resolved.model();
  if (m.has_head_dim()) {
    RopeConfig rope;
    LogitScaleConfig logit_scale;
    return convert_rope(resolved, m.head_dim(), rope, logit_scale);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<NamedRun>> expand_sweep(const LoadedRecipe& recipe) {
  const std::string stem = recipe_stem(recipe.path);
  std::vector<NamedRun> runs;
  const auto& axes = recipe.given.sweep();
  if (axes.empty()) {
    NamedRun run{stem, recipe};
    runs.push_back(std::move(run));
    return runs;
  }
  // Each run is validated on its own (about a millisecond): a grid of 10^4 or
  // more runs (e.g. 4 axes of 10 values) took seconds to minutes to refuse or list.
  uint64_t grid = 1;
  for (const auto& axis : axes) {
    grid *= static_cast<uint64_t>(std::max(axis.values_size(), 1));
    if (grid > kMaxSweepRuns) {
      const auto it = recipe.where.find(absl::StrCat("sweep.", axes[0].key()));
      return error_at(it != recipe.where.end() ? it->second : recipe.path,
                      absl::StrCat("sweep: the grid has more than ", kMaxSweepRuns,
                                   " runs (the product of the axis lengths)"));
    }
  }
  for (const auto& axis : axes) {
    if (absl::StartsWith(axis.key(), "stages.")) continue;
    const auto it = recipe.where.find(absl::StrCat("sweep.", axis.key()));
    ROTOR_RETURN_IF_ERROR(recipe_internal::check_not_staged(
        recipe.given, axis.key(), it != recipe.where.end() ? it->second : recipe.path, "sweep"));
  }
  std::vector<int> index(axes.size(), 0);
  while (true) {
    Recipe given = recipe.given;
    given.clear_sweep();
    RecipeSourceMap where = recipe.where;
    std::string name = stem;
    std::vector<std::pair<std::string, std::string>> values;
    for (int a = 0; a < axes.size(); ++a) {
      const std::string& text = axes[a].values(index[a]);
      const std::string loc = where[absl::StrCat("sweep.", axes[a].key())];
      if (auto s = recipe_internal::set_path(given, axes[a].key(), YAML::Load(text), loc, where);
          !s.ok())
        return s;
      absl::StrAppend(&name, "-", axes[a].key(), "=", text);
      values.emplace_back(axes[a].key(), text);
    }
    name = sanitize(name);
    const std::string dir =
        absl::StrCat(with_defaults(given, recipe.path).run().dir(), "/", name);
    given.mutable_run()->set_dir(dir);
    absl::StatusOr<LoadedRecipe> loaded =
        finish(std::move(given), recipe.path, std::move(where), RecipeMode::kTrain);
    if (!loaded.ok())
      return absl::Status(loaded.status().code(),
                          absl::StrCat("sweep run ", name, ": ", loaded.status().message()));
    runs.push_back(NamedRun{name, *std::move(loaded), std::move(values)});
    int a = axes.size() - 1;  // odometer, last axis fastest
    while (a >= 0 && ++index[a] == axes[a].values_size()) index[a--] = 0;
    if (a < 0) break;
  }
  return runs;
}

}  // namespace rotor
