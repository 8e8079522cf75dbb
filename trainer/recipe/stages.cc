// `stages:` of a recipe: parsing, `stages.NAME.KEY` keys, each stage's own
// recipe. See "Stages" in recipe.h.
#include <yaml-cpp/yaml.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "kernels/status.h"
#include "trainer/recipe/recipe.h"
#include "trainer/recipe/stages.h"

namespace rotor {
namespace recipe_internal {
namespace {

bool valid_name(const std::string& name) {
  if (name.empty()) return false;
  for (char ch : name) {
    const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                    ch == '_' || ch == '-';
    if (!ok) return false;
  }
  return true;
}

std::vector<std::string> stage_names(const recipe::Recipe& r) {
  std::vector<std::string> names;
  for (const recipe::Stage& s : r.stages()) names.push_back(s.name());
  return names;
}

// The keys a stage may not set, found by applying its set to an empty recipe.
absl::Status check_stage_keys(const recipe::Recipe& probe, const std::string& stage, const std::string& key,
                              const std::string& location) {
  std::string why;
  if (probe.has_model())
    why = "the model is the run's (its sizes and weights carry over from stage to stage)";
  else if (probe.train().has_steps())
    why = "a stage's steps are its `steps:`";
  else if (probe.train().has_seed())
    why = "train.seed fixes the data order that the stages share";
  else if (probe.run().has_dir())
    why = "the run directory is the run's";
  else if (probe.has_device())
    why = "the device is the run's";
  if (why.empty()) return absl::OkStatus();
  return error_at(location, absl::StrCat("stage ", stage, ": ", key, " cannot be set by a stage: ", why));
}

// A stage's steps as the schema reads an integer (train.steps'); nullopt
// when `value` is not one.
std::optional<int64_t> read_steps(const YAML::Node& value) {
  recipe::Recipe probe;
  RecipeSourceMap ignored;
  if (!set_path(probe, "train.steps", value, "", ignored).ok()) return std::nullopt;
  return probe.train().steps();
}

// Validates `key` = `value` against the schema and the stage rules.
absl::Status check_set(const std::string& stage, const std::string& key, const YAML::Node& value,
                       const std::string& location) {
  if (absl::StartsWith(key, "stages.") || key == "stages" || key == "sweep" || absl::StartsWith(key, "sweep."))
    return error_at(location, absl::StrCat("stage ", stage, ": ", key, " cannot be set by a stage"));
  recipe::Recipe probe;
  RecipeSourceMap ignored;
  if (absl::Status s = set_path(probe, key, value, location, ignored); !s.ok()) {
    // set_path's message is "LOC: KEY: ..."; name the stage after the location.
    std::string msg(s.message());
    if (absl::StartsWith(msg, location + ": ")) msg = msg.substr(location.size() + 2);
    return error_at(location, absl::StrCat("stage ", stage, ": ", msg));
  }
  return check_stage_keys(probe, stage, key, location);
}

// Sets (replacing an earlier value of the same key) one entry of a stage's set.
void put_set(recipe::Stage& stage, const std::string& key, const std::string& flow) {
  for (recipe::StageSet& e : *stage.mutable_set()) {
    if (e.key() == key) {
      e.set_value(flow);
      return;
    }
  }
  recipe::StageSet* e = stage.add_set();
  e->set_key(key);
  e->set_value(flow);
}

}  // namespace

absl::Status parse_stages(const YAML::Node& node, const std::string& file, recipe::Recipe& out,
                          RecipeSourceMap& where) {
  const std::string loc = mark_text(file, node.Mark());
  out.clear_stages();
  for (auto it = where.begin(); it != where.end();)  // an inherited list is replaced
    it = absl::StartsWith(it->first, "stages.") ? where.erase(it) : std::next(it);
  if (node.IsNull()) return absl::OkStatus();  // `stages: null`: none
  if (!node.IsSequence() || node.size() == 0)
    return error_at(loc, "stages: expected a non-empty list of {name, steps, set}");
  for (size_t i = 0; i < node.size(); ++i) {
    const YAML::Node& entry = node[i];
    const std::string entry_loc = mark_text(file, entry.Mark());
    const std::string label = absl::StrCat("stages[", i, "]");
    if (!entry.IsMap()) return error_at(entry_loc, absl::StrCat(label, ": expected a mapping {name, steps, set}"));
    for (const auto& kv : entry) {
      const std::string k = kv.first.IsScalar() ? kv.first.Scalar() : "";
      if (k != "name" && k != "steps" && k != "set")
        return error_at(mark_text(file, kv.first.Mark()),
                        absl::StrCat(label, ": unknown key '", k, "' (a stage has name, steps and set)"));
    }
    recipe::Stage* stage = out.add_stages();
    const YAML::Node name = entry["name"];
    if (!name || !name.IsScalar() || !valid_name(name.Scalar()))
      return error_at(name ? mark_text(file, name.Mark()) : entry_loc,
                      absl::StrCat(label, ".name: expected a name of letters, digits, _ and -",
                                   name ? absl::StrCat(", got '", yaml_flow(name), "'") : std::string(" (required)")));
    stage->set_name(name.Scalar());
    for (int j = 0; j + 1 < out.stages_size(); ++j)
      if (out.stages(j).name() == stage->name())
        return error_at(mark_text(file, name.Mark()), absl::StrCat("stages: two stages are named '", stage->name(), "'"));
    const std::string prefix = absl::StrCat("stages.", stage->name());
    where[prefix] = entry_loc;
    const YAML::Node steps = entry["steps"];
    const std::string steps_loc = steps ? mark_text(file, steps.Mark()) : entry_loc;
    if (!steps || steps.IsNull())
      return error_at(steps_loc, absl::StrCat("stage ", stage->name(), ": steps is required (its optimizer steps)"));
    const std::optional<int64_t> n = read_steps(steps);
    if (!n)
      return error_at(steps_loc, absl::StrCat("stage ", stage->name(), ": steps: expected an integer, got '",
                                              yaml_flow(steps), "'"));
    if (*n < 1) return error_at(steps_loc, absl::StrCat("stage ", stage->name(), ": steps must be >= 1, got ", *n));
    stage->set_steps(*n);
    where[prefix + ".steps"] = steps_loc;
    const YAML::Node set = entry["set"];
    if (!set || set.IsNull()) continue;  // a stage may change nothing but the schedule
    if (!set.IsMap())
      return error_at(mark_text(file, set.Mark()),
                      absl::StrCat("stage ", stage->name(), ": set: expected a mapping {dotted.key: value}"));
    for (const auto& kv : set) {
      const std::string key = kv.first.IsScalar() ? kv.first.Scalar() : yaml_flow(kv.first);
      const std::string value_loc = mark_text(file, (kv.second.IsNull() ? kv.first : kv.second).Mark());
      ROTOR_RETURN_IF_ERROR(check_set(stage->name(), key, kv.second, value_loc));
      put_set(*stage, key, yaml_flow(kv.second));
      where[absl::StrCat(prefix, ".", key)] = value_loc;
    }
  }
  return absl::OkStatus();
}

absl::Status set_stage_path(recipe::Recipe& r, const std::string& dotted, const YAML::Node& value,
                            const std::string& location, RecipeSourceMap& where) {
  // stages.NAME.KEY
  const std::vector<std::string> parts = absl::StrSplit(dotted, absl::MaxSplits('.', 2));
  if (parts.size() < 3 || parts[1].empty() || parts[2].empty())
    return error_at(location, absl::StrCat("'", dotted, "': a stage key reads stages.NAME.KEY"));
  recipe::Stage* stage = nullptr;
  for (recipe::Stage& s : *r.mutable_stages())
    if (s.name() == parts[1]) stage = &s;
  if (stage == nullptr) {
    const std::vector<std::string> names = stage_names(r);
    return error_at(location, absl::StrCat("'", dotted, "': no stage named '", parts[1], "' (",
                                           names.empty() ? std::string("the recipe has no stages")
                                                         : absl::StrCat("stages: ", absl::StrJoin(names, ", ")),
                                           ")"));
  }
  if (parts[2] == "steps") {
    const std::optional<int64_t> n = read_steps(value);
    if (!n || *n < 1)
      return error_at(location, absl::StrCat(dotted, ": expected an integer >= 1, got '", yaml_flow(value), "'"));
    stage->set_steps(*n);
    where[dotted] = location;
    return absl::OkStatus();
  }
  ROTOR_RETURN_IF_ERROR(check_set(stage->name(), parts[2], value, location));
  put_set(*stage, parts[2], yaml_flow(value));
  where[dotted] = location;
  return absl::OkStatus();
}

absl::Status check_not_staged(const recipe::Recipe& r, const std::string& key, const std::string& location,
                              const std::string& what) {
  for (const recipe::Stage& stage : r.stages()) {
    for (const recipe::StageSet& e : stage.set()) {
      const std::string& k = e.key();
      const bool overlap = k == key || absl::StartsWith(k, key + ".") || absl::StartsWith(key, k + ".");
      if (!overlap) continue;
      return error_at(location, absl::StrCat(what, " ", key, ": stage ", stage.name(), " sets ", k,
                                             ", which would override it there; ", what, " stages.",
                                             stage.name(), ".", k, " instead"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<recipe::Recipe> stage_recipe(const recipe::Recipe& given, int index, RecipeSourceMap& where) {
  const recipe::Stage& stage = given.stages(index);
  recipe::Recipe r = given;
  r.clear_stages();
  r.clear_sweep();
  const std::string prefix = absl::StrCat("stages.", stage.name());
  for (const recipe::StageSet& e : stage.set()) {
    const std::string loc = where[absl::StrCat(prefix, ".", e.key())];
    ROTOR_RETURN_IF_ERROR(set_path(r, e.key(), YAML::Load(e.value()), loc, where));
  }
  r.mutable_train()->set_steps(stage.steps());
  where["train.steps"] = where[prefix + ".steps"];
  return r;
}

std::string stages_yaml(const recipe::Recipe& r) {
  if (r.stages_size() == 0) return "";
  YAML::Emitter out;
  out << YAML::BeginMap << YAML::Key << "stages" << YAML::Value << YAML::BeginSeq;
  for (const recipe::Stage& s : r.stages()) {
    out << YAML::BeginMap << YAML::Key << "name" << YAML::Value << s.name() << YAML::Key << "steps"
        << YAML::Value << s.steps();
    if (s.set_size() > 0) {
      out << YAML::Key << "set" << YAML::Value << YAML::BeginMap;
      for (const recipe::StageSet& e : s.set())
        out << YAML::Key << e.key() << YAML::Value << YAML::Flow << YAML::Load(e.value());
      out << YAML::EndMap;
    }
    out << YAML::EndMap;
  }
  out << YAML::EndSeq << YAML::EndMap;
  return out.c_str();
}

}  // namespace recipe_internal
}  // namespace rotor
