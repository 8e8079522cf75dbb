// The YAML <-> recipe.proto walker: protobuf reflection is the schema. See recipe.h.
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "trainer/recipe/recipe.h"
#include "trainer/recipe/stages.h"
#include "kernels/status.h"

namespace rotor {
namespace recipe_internal {

std::string mark_text(const std::string& file, const YAML::Mark& mark) {
  if (mark.is_null()) return file;
  return absl::StrCat(file, ":", mark.line + 1, ":", mark.column + 1);
}

absl::Status error_at(const std::string& location, const std::string& message) {
  return absl::InvalidArgumentError(
      location.empty() ? message : absl::StrCat(location, ": ", message));
}

namespace {

using google::protobuf::Descriptor;
using google::protobuf::EnumValueDescriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

std::string describe(const YAML::Node& node) {
  if (!node.IsDefined() || node.IsNull()) return "nothing";
  if (node.IsScalar()) return absl::StrCat("'", node.Scalar(), "'");
  return yaml_flow(node);
}

absl::Status wrong_type(const std::string& location, const std::string& key,
                        const std::string& expected, const YAML::Node& node) {
  return error_at(location, absl::StrCat(key, ": expected ", expected, ", got ", describe(node)));
}

// Decimal only, like rotor rope (yaml-cpp would read "010" as octal).
bool parse_int(const YAML::Node& node, int64_t& out) {
  if (!node.IsScalar()) return false;
  absl::string_view t = absl::StripAsciiWhitespace(node.Scalar());
  if (absl::ConsumePrefix(&t, "+") && absl::StartsWith(t, "-")) return false;
  const auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), out);
  return !t.empty() && ec == std::errc() && end == t.data() + t.size();
}

bool parse_double(const YAML::Node& node, double& out) {
  if (!node.IsScalar()) return false;
  absl::string_view t = absl::StripAsciiWhitespace(node.Scalar());
  if (absl::ConsumePrefix(&t, "+") && absl::StartsWith(t, "-")) return false;
  const auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), out);
  return !t.empty() && ec == std::errc() && end == t.data() + t.size() && std::isfinite(out);
}

// Well-formed UTF-8 (no overlong forms, surrogates or code points past
// U+10FFFF) without noncharacters: what yaml-cpp's emitter writes back
// unchanged. Anything else came back as U+FFFD from recipe_to_yaml, so the
// recipe written into the run directory named another run.dir or path.
bool valid_text(absl::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<unsigned char>(s[i]);
    uint32_t cp = 0;
    size_t n = 0;
    if (b < 0x80) {
      ++i;
      continue;
    } else if (b >= 0xC2 && b <= 0xDF) {
      cp = b & 0x1F, n = 1;
    } else if (b >= 0xE0 && b <= 0xEF) {
      cp = b & 0x0F, n = 2;
    } else if (b >= 0xF0 && b <= 0xF4) {
      cp = b & 0x07, n = 3;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;  // truncated sequence
    for (size_t k = 1; k <= n; ++k) {
      const auto c = static_cast<unsigned char>(s[i + k]);
      if ((c & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (c & 0x3F);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF) || (cp >= 0xFDD0 && cp <= 0xFDEF) || (cp & 0xFFFE) == 0xFFFE)
      return false;
    i += n + 1;
  }
  return true;
}

// Spellings kept from before a key became an enum: train.recompute was a
// bool, and `true` / `false` still mean full / none.
std::string enum_spelling(const std::string& key, const std::string& value) {
  if (key == "train.recompute" && (value == "true" || value == "false")) return value == "true" ? "full" : "none";
  return value;
}

std::vector<std::string> enum_names(const FieldDescriptor* field) {
  std::vector<std::string> names;
  const auto* type = field->enum_type();
  for (int i = 0; i < type->value_count(); ++i) {
    if (type->value(i)->number() != 0) names.push_back(type->value(i)->name());
  }
  return names;
}

// One scalar (or list element) of `field` from `node`.
absl::Status set_scalar(Message& m, const FieldDescriptor* f, const YAML::Node& node,
                        const std::string& key, const std::string& location) {
  const Reflection* r = m.GetReflection();
  const bool rep = f->is_repeated();
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT64: {
      int64_t v = 0;
      if (!parse_int(node, v)) return wrong_type(location, key, "an integer", node);
      rep ? r->AddInt64(&m, f, v) : r->SetInt64(&m, f, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_DOUBLE: {
      double v = 0;
      if (!parse_double(node, v)) return wrong_type(location, key, "a number", node);
      rep ? r->AddDouble(&m, f, v) : r->SetDouble(&m, f, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_BOOL: {
      bool v = false;
      if (!node.IsScalar() || !YAML::convert<bool>::decode(node, v))
        return wrong_type(location, key, "true or false", node);
      rep ? r->AddBool(&m, f, v) : r->SetBool(&m, f, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_STRING: {
      if (!node.IsScalar()) return wrong_type(location, key, "a string", node);
      if (!valid_text(node.Scalar()))
        return error_at(location, absl::StrCat(key, ": not valid UTF-8 text (or holds a Unicode noncharacter)"));
      rep ? r->AddString(&m, f, node.Scalar()) : r->SetString(&m, f, node.Scalar());
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_ENUM: {
      const std::vector<std::string> names = enum_names(f);
      const std::string expected = absl::StrCat("one of ", absl::StrJoin(names, ", "));
      if (!node.IsScalar()) return wrong_type(location, key, expected, node);
      const EnumValueDescriptor* v = f->enum_type()->FindValueByName(enum_spelling(key, node.Scalar()));
      if (v == nullptr || v->number() == 0) {
        std::string msg = absl::StrCat(key, ": expected ", expected, ", got ", describe(node));
        if (std::string c = closest(node.Scalar(), names); !c.empty())
          absl::StrAppend(&msg, " (did you mean '", c, "'?)");
        return error_at(location, msg);
      }
      rep ? r->AddEnum(&m, f, v) : r->SetEnum(&m, f, v);
      return absl::OkStatus();
    }
    default:
      return error_at(location, absl::StrCat(key, ": unsupported field type"));
  }
}

absl::Status set_field(Message& m, const FieldDescriptor* f, const YAML::Node& node,
                       const std::string& key, const std::string& file,
                       const std::string& location, RecipeSourceMap& where) {
  const Reflection* r = m.GetReflection();
  where[key] = location;
  if (node.IsNull()) {  // `key: null` / `key:` unsets it (e.g. an inherited key)
    r->ClearField(&m, f);
    return absl::OkStatus();
  }
  if (f->is_repeated()) {
    if (!node.IsSequence()) {
      return wrong_type(location, key,
                        f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE
                            ? "a list of mappings"
                            : absl::StrCat("a list such as [a, b]"),
                        node);
    }
    r->ClearField(&m, f);  // lists replace
    for (size_t i = 0; i < node.size(); ++i) {
      const std::string element_key = absl::StrCat(key, "[", i, "]");
      const std::string element_loc = file.empty() ? location : mark_text(file, node[i].Mark());
      if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
        Message* element = r->AddMessage(&m, f);
        if (!node[i].IsMap()) return wrong_type(element_loc, element_key, "a mapping", node[i]);
        ROTOR_RETURN_IF_ERROR(apply_yaml(node[i], *element, element_key, file, where, element_loc));
      } else {
        ROTOR_RETURN_IF_ERROR(set_scalar(m, f, node[i], element_key, element_loc));
      }
    }
    return absl::OkStatus();
  }
  if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
    if (!node.IsMap()) return wrong_type(location, key, "a mapping (section)", node);
    return apply_yaml(node, *r->MutableMessage(&m, f), key, file, where, location);
  }
  return set_scalar(m, f, node, key, location);
}

absl::Status unknown_key(const std::string& location, const std::string& key,
                         const Descriptor* d, const std::string& prefix) {
  const std::vector<std::string> keys = field_keys(d, prefix);
  std::string msg = absl::StrCat("unknown key '", key, "'");
  if (std::string c = closest(key, keys); !c.empty()) {
    absl::StrAppend(&msg, " (did you mean '", c, "'?)");
  } else {
    absl::StrAppend(&msg, "; known keys", prefix.empty() ? "" : absl::StrCat(" of ", prefix),
                    ": ", absl::StrJoin(keys, ", "));
  }
  return error_at(location, msg);
}

// Emits one value of `f` (element `index` when repeated).
void emit_value(YAML::Emitter& out, const Message& m, const FieldDescriptor* f, int index);

void emit_message(YAML::Emitter& out, const Message& m) {
  const Reflection* r = m.GetReflection();
  const Descriptor* d = m.GetDescriptor();
  out << YAML::BeginMap;
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    if (f->is_repeated() ? r->FieldSize(m, f) == 0 : !r->HasField(m, f)) continue;
    if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE && !f->is_repeated() &&
        r->GetMessage(m, f).ByteSizeLong() == 0)
      continue;  // an empty section
    out << YAML::Key << f->name() << YAML::Value;
    if (f->is_repeated()) {
      const bool flow = f->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE;
      if (flow) out << YAML::Flow;
      out << YAML::BeginSeq;
      for (int j = 0; j < r->FieldSize(m, f); ++j) emit_value(out, m, f, j);
      out << YAML::EndSeq;
    } else {
      emit_value(out, m, f, -1);
    }
  }
  out << YAML::EndMap;
}

std::string shortest(double v) {
  char buf[64];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, ec == std::errc() ? end : buf);
}

void emit_value(YAML::Emitter& out, const Message& m, const FieldDescriptor* f, int index) {
  const Reflection* r = m.GetReflection();
  const bool rep = index >= 0;
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT64:
      out << (rep ? r->GetRepeatedInt64(m, f, index) : r->GetInt64(m, f));
      break;
    case FieldDescriptor::CPPTYPE_DOUBLE:
      out << shortest(rep ? r->GetRepeatedDouble(m, f, index) : r->GetDouble(m, f));
      break;
    case FieldDescriptor::CPPTYPE_BOOL:
      out << ((rep ? r->GetRepeatedBool(m, f, index) : r->GetBool(m, f)) ? "true" : "false");
      break;
    case FieldDescriptor::CPPTYPE_STRING: {
      const std::string s = rep ? r->GetRepeatedString(m, f, index) : r->GetString(m, f);
      // Quote what YAML would read as something else (null, bool, number, empty).
      YAML::Node probe;
      bool plain = !s.empty();
      try {
        probe = YAML::Load(s);
        plain = plain && probe.IsScalar() && probe.Scalar() == s && s != "null" && s != "~";
      } catch (const YAML::Exception&) {
        plain = false;
      }
      if (!plain) out << YAML::DoubleQuoted;
      out << s;
      break;
    }
    case FieldDescriptor::CPPTYPE_ENUM:
      out << (rep ? r->GetRepeatedEnum(m, f, index) : r->GetEnum(m, f))->name();
      break;
    case FieldDescriptor::CPPTYPE_MESSAGE:
      emit_message(out, rep ? r->GetRepeatedMessage(m, f, index) : r->GetMessage(m, f));
      break;
    default:
      break;
  }
}

}  // namespace

std::vector<std::string> field_keys(const Descriptor* d, const std::string& prefix) {
  std::vector<std::string> keys;
  for (int i = 0; i < d->field_count(); ++i)
    keys.push_back(prefix.empty() ? d->field(i)->name()
                                  : absl::StrCat(prefix, ".", d->field(i)->name()));
  return keys;
}

std::string yaml_flow(const YAML::Node& node) {
  YAML::Emitter out;
  out << YAML::Flow << node;
  return out.c_str();
}

std::string closest(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best_word;
  size_t best = 3;  // within two edits
  for (const std::string& c : candidates) {
    std::vector<size_t> row(c.size() + 1);
    for (size_t j = 0; j <= c.size(); ++j) row[j] = j;
    for (size_t i = 1; i <= word.size(); ++i) {
      size_t diagonal = row[0];
      row[0] = i;
      for (size_t j = 1; j <= c.size(); ++j) {
        const size_t up = row[j];
        row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (word[i - 1] != c[j - 1])});
        diagonal = up;
      }
    }
    if (row[c.size()] < best) best = row[c.size()], best_word = c;
  }
  return best_word;
}

absl::Status apply_yaml(const YAML::Node& node, Message& message, const std::string& key,
                        const std::string& file, RecipeSourceMap& where, const std::string& location) {
  const Descriptor* d = message.GetDescriptor();
  std::set<std::string> seen;
  for (const auto& entry : node) {
    const std::string name = entry.first.IsScalar() ? entry.first.Scalar() : describe(entry.first);
    const std::string full = key.empty() ? name : absl::StrCat(key, ".", name);
    const std::string key_loc = file.empty() ? location : mark_text(file, entry.first.Mark());
    if (!seen.insert(name).second) return error_at(key_loc, absl::StrCat("duplicate key '", full, "'"));
    const FieldDescriptor* f = d->FindFieldByName(name);
    if (f == nullptr || (key.empty() && (name == "sweep" || name == "stages")))
      return unknown_key(key_loc, full, d, key);
    const std::string value_loc =
        entry.second.IsNull() || file.empty() ? key_loc : mark_text(file, entry.second.Mark());
    if (auto s = set_field(message, f, entry.second, full, file, value_loc, where); !s.ok())
      return s;
  }
  return absl::OkStatus();
}

absl::Status set_path(Message& message, const std::string& dotted, const YAML::Node& value,
                      const std::string& location, RecipeSourceMap& where) {
  if (absl::StartsWith(dotted, "stages.") && message.GetDescriptor() == recipe::Recipe::descriptor())
    return set_stage_path(static_cast<recipe::Recipe&>(message), dotted, value, location, where);
  Message* m = &message;
  std::string prefix;
  const std::vector<std::string> parts = absl::StrSplit(dotted, '.');
  for (size_t i = 0; i < parts.size(); ++i) {
    const std::string full = prefix.empty() ? parts[i] : absl::StrCat(prefix, ".", parts[i]);
    const FieldDescriptor* f = m->GetDescriptor()->FindFieldByName(parts[i]);
    if (f == nullptr || (i == 0 && (parts[i] == "sweep" || parts[i] == "stages")))
      return unknown_key(location, dotted, m->GetDescriptor(), prefix);
    if (i + 1 == parts.size()) return set_field(*m, f, value, full, "", location, where);
    if (f->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE || f->is_repeated()) {
      return error_at(location, absl::StrCat("unknown key '", dotted, "' ('", full,
                                             "' is not a section)"));
    }
    m = m->GetReflection()->MutableMessage(m, f);
    prefix = full;
  }
  return absl::OkStatus();
}

}  // namespace recipe_internal

std::string recipe_to_yaml(const recipe::Recipe& recipe) {
  recipe::Recipe body = recipe;
  body.clear_sweep();
  body.clear_stages();
  YAML::Emitter out;
  recipe_internal::emit_message(out, body);
  std::string text = body.ByteSizeLong() == 0 ? "" : out.c_str();
  if (const std::string stages = recipe_internal::stages_yaml(recipe); !stages.empty()) {
    if (!text.empty()) text += "\n";
    text += stages;
  }
  if (recipe.sweep_size() > 0) {
    YAML::Emitter sweep;
    sweep << YAML::BeginMap << YAML::Key << "sweep" << YAML::Value << YAML::BeginMap;
    for (const recipe::SweepAxis& axis : recipe.sweep()) {
      sweep << YAML::Key << axis.key() << YAML::Value << YAML::Flow << YAML::BeginSeq;
      for (const std::string& v : axis.values()) sweep << YAML::Load(v);
      sweep << YAML::EndSeq;
    }
    sweep << YAML::EndMap << YAML::EndMap;
    if (!text.empty()) text += "\n";
    text += sweep.c_str();
  }
  return text + "\n";
}

}  // namespace rotor
