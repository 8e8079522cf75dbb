// Recipe keys of `rotor rope` -> RopeSettings -> JSON. See rope_settings.h.
#include "trainer/recipe/rope_settings.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace rotor {
namespace {

// ---------------------------------------------------------------------------
// YAML value -> typed value. Every error reads "KEY: expected ..., got ...".

// How a value appears in an error: a scalar quoted, anything else in YAML flow style.
std::string describe(const YAML::Node& node) {
  if (!node.IsDefined() || node.IsNull()) return "nothing";
  if (node.IsScalar()) return absl::StrCat("'", node.Scalar(), "'");
  YAML::Emitter emitter;
  emitter << YAML::Flow << node;
  return emitter.c_str();
}

absl::Status wrong_type(const std::string& key, const char* expected, const YAML::Node& node) {
  return absl::InvalidArgumentError(
      absl::StrCat(key, ": expected ", expected, ", got ", describe(node)));
}

// Decimal only: yaml-cpp's own conversion reads "010" as octal 8.
absl::StatusOr<double> as_number(const std::string& key, const YAML::Node& node) {
  if (!node.IsScalar()) return wrong_type(key, "a number", node);
  absl::string_view text = absl::StripAsciiWhitespace(node.Scalar());
  if (absl::ConsumePrefix(&text, "+") && absl::StartsWith(text, "-"))
    return wrong_type(key, "a number", node);
  double value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) {
    return wrong_type(key, "a number", node);
  }
  if (!std::isfinite(value)) return wrong_type(key, "a finite number", node);
  return value;
}

absl::StatusOr<int64_t> as_integer(const std::string& key, const YAML::Node& node) {
  if (!node.IsScalar()) return wrong_type(key, "an integer", node);
  absl::string_view text = absl::StripAsciiWhitespace(node.Scalar());
  if (absl::ConsumePrefix(&text, "+") && absl::StartsWith(text, "-"))
    return wrong_type(key, "an integer", node);
  int64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) {
    return wrong_type(key, "an integer", node);
  }
  return value;
}

absl::StatusOr<bool> as_bool(const std::string& key, const YAML::Node& node) {
  bool value = false;
  if (!node.IsScalar() || !YAML::convert<bool>::decode(node, value)) {
    return wrong_type(key, "true or false", node);
  }
  return value;
}

absl::StatusOr<std::string> as_name(const std::string& key, const YAML::Node& node) {
  if (!node.IsScalar()) return wrong_type(key, "a name", node);
  return node.Scalar();
}

template <typename T>
absl::StatusOr<std::vector<T>> as_list(const std::string& key, const YAML::Node& node,
                                       const char* expected,
                                       absl::StatusOr<T> (*element)(const std::string&,
                                                                    const YAML::Node&)) {
  if (!node.IsSequence()) return wrong_type(key, expected, node);
  std::vector<T> values;
  for (size_t i = 0; i < node.size(); ++i) {
    absl::StatusOr<T> v = element(absl::StrCat(key, "[", i, "]"), node[i]);
    if (!v.ok()) return v.status();
    values.push_back(*v);
  }
  return values;
}

// ---------------------------------------------------------------------------
// The key table. Each setter converts the YAML value and stores it.

struct ParseState {
  RopeSettings settings;
  bool head_dim_given = false;
  bool factor_given = false;  // rope.factor has no neutral default for scaling methods
};

using Setter = absl::Status (*)(const std::string& key, const YAML::Node& value, ParseState& state);

struct KeySpec {
  const char* key;
  Setter set;
};

// Assigns the converted value or returns the conversion error.
template <typename T, typename U>
absl::Status store(absl::StatusOr<T> value, U& field) {
  if (!value.ok()) return value.status();
  field = *std::move(value);
  return absl::OkStatus();
}

#define ROTOR_KEY(name, expr)                                                               \
  KeySpec {                                                                                 \
    name, [](const std::string& key, const YAML::Node& v, ParseState& st) -> absl::Status { \
      RopeSettings& s = st.settings;                                                        \
      (void)s;                                                                              \
      return expr;                                                                          \
    }                                                                                       \
  }

const KeySpec kKeys[] = {
    KeySpec{"model.head_dim",
            [](const std::string& key, const YAML::Node& v, ParseState& st) -> absl::Status {
              st.head_dim_given = true;
              return store(as_integer(key, v), st.settings.head_dim);
            }},
    KeySpec{"rope.method",
            [](const std::string& key, const YAML::Node& v, ParseState& st) -> absl::Status {
              absl::StatusOr<std::string> name = as_name(key, v);
              if (!name.ok()) return name.status();
              return store(parse_rope_method(*name), st.settings.rope.method);
            }},
    ROTOR_KEY("rope.theta", store(as_number(key, v), s.rope.theta)),
    KeySpec{"rope.factor",
            [](const std::string& key, const YAML::Node& v, ParseState& st) -> absl::Status {
              st.factor_given = true;
              return store(as_number(key, v), st.settings.rope.factor);
            }},
    ROTOR_KEY("rope.original_max_position",
              store(as_integer(key, v), s.rope.original_max_position)),
    ROTOR_KEY("rope.beta_fast", store(as_number(key, v), s.rope.beta_fast)),
    ROTOR_KEY("rope.beta_slow", store(as_number(key, v), s.rope.beta_slow)),
    ROTOR_KEY("rope.truncate", store(as_bool(key, v), s.rope.truncate)),
    ROTOR_KEY("rope.low_freq_factor", store(as_number(key, v), s.rope.low_freq_factor)),
    ROTOR_KEY("rope.high_freq_factor", store(as_number(key, v), s.rope.high_freq_factor)),
    ROTOR_KEY("rope.short_factor",
              store(as_list<double>(key, v, "a list of numbers", as_number), s.rope.short_factor)),
    ROTOR_KEY("rope.long_factor",
              store(as_list<double>(key, v, "a list of numbers", as_number), s.rope.long_factor)),
    // null unsets it (back to the method's default), e.g. to override a recipe.
    KeySpec{"rope.attention_factor",
            [](const std::string& key, const YAML::Node& v, ParseState& st) -> absl::Status {
              if (v.IsNull()) {
                st.settings.rope.attention_factor.reset();
                return absl::OkStatus();
              }
              return store(as_number(key, v), st.settings.rope.attention_factor);
            }},
    ROTOR_KEY("rope.sequence_length", store(as_integer(key, v), s.rope.sequence_length)),
    KeySpec{"logit_scale.kind",
            [](const std::string& key, const YAML::Node& v, ParseState& st) -> absl::Status {
              absl::StatusOr<std::string> name = as_name(key, v);
              if (!name.ok()) return name.status();
              return store(parse_logit_scale_kind(*name), st.settings.logit_scale.kind);
            }},
    ROTOR_KEY("logit_scale.value", store(as_number(key, v), s.logit_scale.value)),
    ROTOR_KEY("logit_scale.base_length", store(as_integer(key, v), s.logit_scale.base_length)),
    ROTOR_KEY("logit_scale.skip_layers",
              store(as_list<int64_t>(key, v, "a list of integers such as [0, 1]", as_integer),
                    s.logit_scale.skip_layers)),
    ROTOR_KEY("logit_scale.min", store(as_number(key, v), s.logit_scale.min)),
};

#undef ROTOR_KEY

const KeySpec* find_key(absl::string_view key) {
  for (const KeySpec& spec : kKeys) {
    if (key == spec.key) return &spec;
  }
  return nullptr;
}

size_t edit_distance(absl::string_view a, absl::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1] ? 1 : 0)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

absl::Status unknown_key(const std::string& key) {
  const KeySpec* closest = nullptr;
  size_t best = 3;  // suggest only within two edits
  for (const KeySpec& spec : kKeys) {
    const size_t d = edit_distance(key, spec.key);
    if (d < best) best = d, closest = &spec;
  }
  if (closest != nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown key '", key, "' (did you mean '", closest->key, "'?)"));
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown key '", key, "'; known keys: ", absl::StrJoin(rope_setting_keys(), ", ")));
}

std::vector<std::string> known_sections() {
  std::vector<std::string> sections;
  for (const KeySpec& spec : kKeys) {
    std::string section(
        absl::string_view(spec.key).substr(0, absl::string_view(spec.key).find('.')));
    if (std::find(sections.begin(), sections.end(), section) == sections.end())
      sections.push_back(section);
  }
  return sections;
}

// "NAME:LINE:COL: " (1-based) for a node of the recipe text.
std::string where(const std::string& recipe_name, const YAML::Mark& mark) {
  if (mark.is_null()) return absl::StrCat(recipe_name, ": ");
  return absl::StrCat(recipe_name, ":", mark.line + 1, ":", mark.column + 1, ": ");
}

absl::Status with_prefix(const absl::Status& status, const std::string& prefix) {
  return absl::Status(status.code(), absl::StrCat(prefix, status.message()));
}

// Applies the model/rope/logit_scale sections of a recipe text.
absl::Status apply_recipe(const std::string& text, const std::string& name, ParseState& state) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(where(name, e.mark), e.msg));
  }
  if (!root.IsDefined() || root.IsNull()) return absl::OkStatus();  // empty recipe
  if (!root.IsMap()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where(name, root.Mark()), "a recipe is a mapping of sections (",
                     absl::StrJoin(known_sections(), ", "), "), got ", describe(root)));
  }
  const std::vector<std::string> sections = known_sections();
  std::set<std::string> seen;
  for (const auto& section_entry : root) {
    const YAML::Node& section_key = section_entry.first;
    const YAML::Node& section = section_entry.second;
    const std::string section_name =
        section_key.IsScalar() ? section_key.Scalar() : describe(section_key);
    if (std::find(sections.begin(), sections.end(), section_name) == sections.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where(name, section_key.Mark()), "unknown section '", section_name,
                       "'; known sections: ", absl::StrJoin(sections, ", ")));
    }
    if (section.IsNull()) continue;  // "rope:" with nothing under it
    if (!section.IsMap()) {
      return absl::InvalidArgumentError(absl::StrCat(where(name, section.Mark()), "section '",
                                                     section_name, "' must be a mapping, got ",
                                                     describe(section)));
    }
    for (const auto& entry : section) {
      const std::string key = absl::StrCat(
          section_name, ".", entry.first.IsScalar() ? entry.first.Scalar() : describe(entry.first));
      const KeySpec* spec = find_key(key);
      if (spec == nullptr) return with_prefix(unknown_key(key), where(name, entry.first.Mark()));
      if (!seen.insert(key).second) {
        return absl::InvalidArgumentError(
            absl::StrCat(where(name, entry.first.Mark()), "duplicate key '", key, "'"));
      }
      if (absl::Status s = spec->set(key, entry.second, state); !s.ok()) {
        return with_prefix(s, where(name, entry.second.Mark()));
      }
    }
  }
  return absl::OkStatus();
}

// Applies one "KEY=VALUE" override.
absl::Status apply_override(const std::string& assignment, ParseState& state) {
  const size_t eq = assignment.find('=');
  if (eq == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("--set expects KEY=VALUE, got '", assignment, "'"));
  }
  const std::string key(absl::StripAsciiWhitespace(absl::string_view(assignment).substr(0, eq)));
  const std::string value_text = assignment.substr(eq + 1);
  if (key.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--set expects KEY=VALUE, got '", assignment, "'"));
  }
  const KeySpec* spec = find_key(key);
  if (spec == nullptr) return unknown_key(key);
  YAML::Node value;
  try {
    value = YAML::Load(value_text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(key, ": cannot parse '", value_text, "' as a YAML value: ", e.msg));
  }
  return spec->set(key, value, state);
}

}  // namespace

std::vector<std::string> rope_setting_keys() {
  std::vector<std::string> keys;
  for (const KeySpec& spec : kKeys) keys.emplace_back(spec.key);
  return keys;
}

absl::StatusOr<RopeSettings> parse_rope_settings(const std::string& recipe_yaml,
                                                 const std::string& recipe_name,
                                                 const std::vector<std::string>& overrides) {
  ParseState state;
  if (!recipe_yaml.empty()) {
    if (absl::Status s = apply_recipe(recipe_yaml, recipe_name, state); !s.ok()) return s;
  }
  for (const std::string& assignment : overrides) {
    if (absl::Status s = apply_override(assignment, state); !s.ok()) return s;
  }
  if (!state.head_dim_given) {
    return absl::InvalidArgumentError(
        "model.head_dim is required (in the recipe's model section or --set model.head_dim=128)");
  }
  const RopeSettings& s = state.settings;
  const RopeMethod m = s.rope.method;
  if (!state.factor_given && m != RopeMethod::kNone && m != RopeMethod::kLongRope) {
    return absl::InvalidArgumentError(absl::StrCat("rope.factor is required for rope.method=",
                                                   rope_method_name(m)));
  }
  if (absl::Status st = validate_rope(s.rope, s.head_dim); !st.ok()) return st;
  if (absl::Status st = validate_logit_scale(s.logit_scale); !st.ok()) return st;
  return state.settings;
}

absl::StatusOr<RopeSettings> load_rope_settings(const std::string& recipe_path,
                                                const std::vector<std::string>& overrides) {
  if (recipe_path.empty()) return parse_rope_settings("", "", overrides);
  std::ifstream in(recipe_path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("cannot read recipe '", recipe_path, "': ", std::strerror(errno)));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad())
    return absl::DataLossError(absl::StrCat("error reading recipe '", recipe_path, "'"));
  return parse_rope_settings(text.str(), recipe_path, overrides);
}

std::vector<int64_t> default_rope_positions() {
  return {0, 1023, 2047, 4095, 8191, 16383, 32767, 65535, 131071};
}

int64_t default_rope_layers(const LogitScaleConfig& scale) {
  if (scale.skip_layers.empty()) return 1;
  return *std::max_element(scale.skip_layers.begin(), scale.skip_layers.end()) + 2;
}

absl::StatusOr<nlohmann::json> rope_json(const RopeSettings& settings,
                                         const std::vector<int64_t>& positions, int64_t layers) {
  if (layers < 1)
    return absl::InvalidArgumentError(absl::StrCat("--layers must be >= 1, got ", layers));
  for (int64_t p : positions) {
    if (p < 0) return absl::InvalidArgumentError(absl::StrCat("--positions must be >= 0, got ", p));
  }
  absl::StatusOr<RopeTables> tables = compute_rope(settings.rope, settings.head_dim);
  if (!tables.ok()) return tables.status();
  if (absl::Status s = validate_logit_scale(settings.logit_scale); !s.ok()) return s;

  nlohmann::json scale_layers = nlohmann::json::array();
  for (int64_t layer = 0; layer < layers; ++layer) {
    nlohmann::json row = nlohmann::json::array();
    for (int64_t p : positions) row.push_back(logit_scale_at(settings.logit_scale, layer, p));
    scale_layers.push_back(std::move(row));
  }
  nlohmann::json inv_freq = nlohmann::json::array();
  for (float f : tables->inv_freq) inv_freq.push_back(static_cast<double>(f));
  return nlohmann::json{
      {"inv_freq", std::move(inv_freq)},
      {"attention_factor", tables->attention_factor},
      {"logit_scale", {{"positions", positions}, {"layers", std::move(scale_layers)}}},
  };
}

}  // namespace rotor
