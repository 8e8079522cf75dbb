// Hugging Face config.json <-> rotor configs. See config.h for the mapping
// and the choices made where transformers versions differ.
#include "trainer/hf/config.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "kernels/status.h"

namespace rotor {
namespace {

using json = nlohmann::json;

constexpr const char* kRopeTypes = "default, linear, dynamic, yarn, llama3, longrope";

// Reads the keys of one JSON object; errors are "<where>: <prefix><key> ...".
// A key whose value is null counts as absent (HF treats None as "not given").
class Reader {
 public:
  Reader(const json& obj, std::string where, std::string prefix)
      : obj_(obj), where_(std::move(where)), prefix_(std::move(prefix)) {}

  absl::Status error(const std::string& key, const std::string& what) const {
    return absl::InvalidArgumentError(absl::StrCat(where_, ": ", prefix_, key, " ", what));
  }
  const json* find(const std::string& key) const {
    auto it = obj_.find(key);
    if (it == obj_.end() || it->is_null()) return nullptr;
    return &*it;
  }
  bool has(const std::string& key) const { return find(key) != nullptr; }

  absl::StatusOr<std::optional<int64_t>> opt_int(const std::string& key) const {
    const json* v = find(key);
    if (v == nullptr) return std::optional<int64_t>();
    if (v->is_number_integer()) return std::optional<int64_t>(v->get<int64_t>());
    if (v->is_number_float()) {
      const double d = v->get<double>();
      if (std::isfinite(d) && d == std::floor(d) && std::abs(d) < 9.0e15) {
        return std::optional<int64_t>(static_cast<int64_t>(d));
      }
    }
    return error(key, absl::StrCat("must be an integer, got ", v->dump()));
  }
  absl::StatusOr<int64_t> req_int(const std::string& key, const std::string& why) const {
    std::optional<int64_t> v;
    ROTOR_ASSIGN_OR_RETURN(v, opt_int(key));
    if (!v) return error(key, absl::StrCat("is required ", why));
    return *v;
  }
  absl::StatusOr<int64_t> int_or(const std::string& key, int64_t fallback) const {
    std::optional<int64_t> v;
    ROTOR_ASSIGN_OR_RETURN(v, opt_int(key));
    return v.value_or(fallback);
  }
  absl::StatusOr<std::optional<double>> opt_num(const std::string& key) const {
    const json* v = find(key);
    if (v == nullptr) return std::optional<double>();
    if (!v->is_number()) return error(key, absl::StrCat("must be a number, got ", v->dump()));
    return std::optional<double>(v->get<double>());
  }
  absl::StatusOr<double> req_num(const std::string& key, const std::string& why) const {
    std::optional<double> v;
    ROTOR_ASSIGN_OR_RETURN(v, opt_num(key));
    if (!v) return error(key, absl::StrCat("is required ", why));
    return *v;
  }
  absl::StatusOr<double> num_or(const std::string& key, double fallback) const {
    std::optional<double> v;
    ROTOR_ASSIGN_OR_RETURN(v, opt_num(key));
    return v.value_or(fallback);
  }
  absl::StatusOr<bool> bool_or(const std::string& key, bool fallback) const {
    const json* v = find(key);
    if (v == nullptr) return fallback;
    if (!v->is_boolean()) return error(key, absl::StrCat("must be true or false, got ", v->dump()));
    return v->get<bool>();
  }
  absl::StatusOr<std::optional<std::string>> opt_string(const std::string& key) const {
    const json* v = find(key);
    if (v == nullptr) return std::optional<std::string>();
    if (!v->is_string()) return error(key, absl::StrCat("must be a string, got ", v->dump()));
    return std::optional<std::string>(v->get<std::string>());
  }
  absl::StatusOr<std::vector<double>> req_num_list(const std::string& key,
                                                   const std::string& why) const {
    const json* v = find(key);
    if (v == nullptr) return error(key, absl::StrCat("is required ", why));
    if (!v->is_array()) return error(key, absl::StrCat("must be a list of numbers, got ", v->dump()));
    std::vector<double> out;
    for (const json& e : *v) {
      if (!e.is_number()) {
        return error(key, absl::StrCat("must be a list of numbers, got element ", e.dump()));
      }
      out.push_back(e.get<double>());
    }
    return out;
  }
  absl::StatusOr<std::vector<int64_t>> int_list_or_empty(const std::string& key) const {
    const json* v = find(key);
    std::vector<int64_t> out;
    if (v == nullptr) return out;
    if (!v->is_array()) return error(key, absl::StrCat("must be a list of integers, got ", v->dump()));
    for (const json& e : *v) {
      if (!e.is_number_integer()) {
        return error(key, absl::StrCat("must be a list of integers, got element ", e.dump()));
      }
      out.push_back(e.get<int64_t>());
    }
    return out;
  }

 private:
  const json& obj_;
  std::string where_;
  std::string prefix_;
};

// HF's get_mscale in _compute_yarn_parameters.
double get_mscale(double scale, double mscale) {
  if (scale <= 1) return 1.0;
  return 0.1 * mscale * std::log(scale) + 1.0;
}

// theta * s^(d/(d-2)): the base rotor's compute_rope uses for ntk (same expression).
double ntk_theta(const RopeConfig& rope, int64_t head_dim) {
  const double d = static_cast<double>(head_dim);
  return rope.theta * std::pow(rope.factor, d / (d - 2.0));
}

bool same_rope(const RopeConfig& a, const RopeConfig& b) {
  return a.method == b.method && a.theta == b.theta && a.factor == b.factor &&
         a.original_max_position == b.original_max_position && a.beta_fast == b.beta_fast &&
         a.beta_slow == b.beta_slow && a.truncate == b.truncate &&
         a.low_freq_factor == b.low_freq_factor && a.high_freq_factor == b.high_freq_factor &&
         a.short_factor == b.short_factor && a.long_factor == b.long_factor &&
         a.attention_factor == b.attention_factor && a.sequence_length == b.sequence_length;
}

struct RopeContext {
  int64_t max_position_embeddings = 0;
  std::optional<int64_t> top_original;  // top-level original_max_position_embeddings (Phi3 style)
};

// One rope dict (rope_scaling or rope_parameters) -> RopeConfig with `theta`.
absl::StatusOr<RopeConfig> parse_rope_dict(const Reader& r, double theta, const RopeContext& ctx,
                                           bool type_required) {
  std::optional<std::string> type;
  ROTOR_ASSIGN_OR_RETURN(type, r.opt_string("rope_type"));
  if (!type) {
    ROTOR_ASSIGN_OR_RETURN(type, r.opt_string("type"));  // legacy key
  }
  if (!type) {
    if (type_required) return r.error("rope_type", "is missing (nor is the legacy key \"type\" given)");
    type = "default";
  }
  RopeConfig rope;
  rope.theta = theta;
  const std::string why = absl::StrCat("for rope_type ", *type);
  std::optional<int64_t> original;
  ROTOR_ASSIGN_OR_RETURN(original, r.opt_int("original_max_position_embeddings"));
  const int64_t max_pos = ctx.max_position_embeddings;

  if (*type == "default") {
    rope.method = RopeMethod::kNone;
  } else if (*type == "linear") {
    rope.method = RopeMethod::kLinear;
    ROTOR_ASSIGN_OR_RETURN(rope.factor, r.req_num("factor", why));
  } else if (*type == "dynamic") {
    rope.method = RopeMethod::kDynamic;
    ROTOR_ASSIGN_OR_RETURN(rope.factor, r.req_num("factor", why));
    if (original && *original != max_pos) {
      return r.error("original_max_position_embeddings",
                     absl::StrCat("(", *original, ") differs from max_position_embeddings (",
                                  max_pos,
                                  "); transformers' dynamic NTK scales from "
                                  "max_position_embeddings, so this is ambiguous"));
    }
    rope.original_max_position = max_pos;
  } else if (*type == "yarn") {
    rope.method = RopeMethod::kYarn;
    ROTOR_ASSIGN_OR_RETURN(rope.factor, r.req_num("factor", why));
    rope.original_max_position = original.value_or(max_pos);
    // HF: `rope_parameters.get("beta_fast") or 32`: absent, null or 0 give the default.
    ROTOR_ASSIGN_OR_RETURN(rope.beta_fast, r.num_or("beta_fast", 0.0));
    if (rope.beta_fast == 0) rope.beta_fast = 32.0;
    ROTOR_ASSIGN_OR_RETURN(rope.beta_slow, r.num_or("beta_slow", 0.0));
    if (rope.beta_slow == 0) rope.beta_slow = 1.0;
    ROTOR_ASSIGN_OR_RETURN(rope.truncate, r.bool_or("truncate", true));
    ROTOR_ASSIGN_OR_RETURN(rope.attention_factor, r.opt_num("attention_factor"));
    std::optional<double> mscale, mscale_all_dim;
    ROTOR_ASSIGN_OR_RETURN(mscale, r.opt_num("mscale"));
    ROTOR_ASSIGN_OR_RETURN(mscale_all_dim, r.opt_num("mscale_all_dim"));
    // HF: `if mscale and mscale_all_dim` (both non-zero), only when
    // attention_factor is not given; otherwise they have no effect.
    if (!rope.attention_factor && mscale && mscale_all_dim && *mscale != 0 &&
        *mscale_all_dim != 0) {
      rope.attention_factor =
          get_mscale(rope.factor, *mscale) / get_mscale(rope.factor, *mscale_all_dim);
    }
  } else if (*type == "llama3") {
    rope.method = RopeMethod::kLlama3;
    ROTOR_ASSIGN_OR_RETURN(rope.factor, r.req_num("factor", why));
    ROTOR_ASSIGN_OR_RETURN(rope.low_freq_factor, r.req_num("low_freq_factor", why));
    ROTOR_ASSIGN_OR_RETURN(rope.high_freq_factor, r.req_num("high_freq_factor", why));
    ROTOR_ASSIGN_OR_RETURN(rope.original_max_position, r.req_int("original_max_position_embeddings", why));
  } else if (*type == "longrope") {
    rope.method = RopeMethod::kLongRope;
    ROTOR_ASSIGN_OR_RETURN(rope.short_factor, r.req_num_list("short_factor", why));
    ROTOR_ASSIGN_OR_RETURN(rope.long_factor, r.req_num_list("long_factor", why));
    ROTOR_ASSIGN_OR_RETURN(rope.attention_factor, r.opt_num("attention_factor"));
    if (ctx.top_original && original && *ctx.top_original != *original) {
      return r.error("original_max_position_embeddings",
                     absl::StrCat("(", *original,
                                  ") differs from the top-level original_max_position_embeddings (",
                                  *ctx.top_original, ")"));
    }
    const std::optional<int64_t> given = ctx.top_original ? ctx.top_original : original;
    if (given) {
      if (*given <= 0) {
        return r.error("original_max_position_embeddings", absl::StrCat("must be > 0, got ", *given));
      }
      // HF derives the factor from the ratio (any explicit factor is unused);
      // a ratio <= 1 gives attention factor 1, as factor 1 does here.
      rope.original_max_position = *given;
      rope.factor = std::max(
          1.0, static_cast<double>(max_pos) / static_cast<double>(rope.original_max_position));
    } else {
      rope.original_max_position = max_pos;
      std::optional<double> factor;
      ROTOR_ASSIGN_OR_RETURN(factor, r.opt_num("factor"));
      if (!factor && !rope.attention_factor) {
        return r.error("factor", "is required for rope_type longrope when neither "
                                 "original_max_position_embeddings nor attention_factor is given");
      }
      rope.factor = factor.value_or(1.0);  // unused by HF when attention_factor is given
    }
  } else {
    return r.error("rope_type", absl::StrCat("'", *type, "' is not supported; accepted: ", kRopeTypes));
  }
  return rope;
}

// validate_rope names recipe keys ("rope.factor must be >= 1"); in a
// config.json error, say first which of the file's keys the values came from.
absl::Status in_hf_rope(const std::string& where, const absl::Status& s, const std::string& dict,
                        const std::string& theta_key) {
  if (s.ok()) return s;
  const bool theta = absl::StartsWith(s.message(), "rope.theta");
  const std::string from = theta || dict.empty() ? theta_key : dict;
  return with_context(s, absl::StrCat(where, ": ", from, ": "));
}

// model_type / architectures: a Llama; partial_rotary_factor 1 when given.
absl::Status check_llama(const Reader& top) {
  std::optional<std::string> model_type;
  ROTOR_ASSIGN_OR_RETURN(model_type, top.opt_string("model_type"));
  if (model_type && *model_type != "llama") {
    return top.error("model_type", absl::StrCat("must be \"llama\", got \"", *model_type, "\""));
  }
  if (const json* arch = top.find("architectures")) {
    if (!arch->is_array() || arch->size() != 1 || !(*arch)[0].is_string() ||
        (*arch)[0].get<std::string>() != "LlamaForCausalLM") {
      return top.error("architectures",
                       absl::StrCat("must be [\"LlamaForCausalLM\"], got ", arch->dump()));
    }
  }
  if (!model_type && !top.has("architectures")) {
    return top.error("model_type", "is missing (expected \"llama\")");
  }
  std::optional<double> partial_rotary;
  ROTOR_ASSIGN_OR_RETURN(partial_rotary, top.opt_num("partial_rotary_factor"));
  if (partial_rotary && *partial_rotary != 1.0) {
    return top.error("partial_rotary_factor",
                     absl::StrCat("must be 1 (rotor rotates the whole head), got ", *partial_rotary));
  }
  return absl::OkStatus();
}

// head_dim: given (stored as 0 when it is HF's default), or derived when
// hidden_size is a multiple of num_attention_heads.
absl::Status parse_head_dim(const Reader& top, LlamaConfig& c) {
  if (c.num_attention_heads <= 0) {
    return top.error("num_attention_heads", absl::StrCat("must be > 0, got ", c.num_attention_heads));
  }
  std::optional<int64_t> head_dim;
  ROTOR_ASSIGN_OR_RETURN(head_dim, top.opt_int("head_dim"));
  const bool divisible = c.hidden_size % c.num_attention_heads == 0;
  if (head_dim) {
    if (*head_dim <= 0 || *head_dim % 2 != 0) {
      return top.error("head_dim", absl::StrCat("must be a positive even integer, got ", *head_dim));
    }
    // Stored as 0 when it is HF's default, so rotor's "derived" form round-trips.
    c.head_dim = (divisible && *head_dim == c.hidden_size / c.num_attention_heads) ? 0 : *head_dim;
    return absl::OkStatus();
  }
  if (divisible) return absl::OkStatus();
  // Name a size that came from HF's defaults rather than from the file.
  std::string defaulted;
  if (!top.has("hidden_size")) {
    absl::StrAppend(&defaulted, "; hidden_size is not in the file, so it is HF's default ",
                    c.hidden_size);
  }
  if (!top.has("num_attention_heads")) {
    absl::StrAppend(&defaulted, "; num_attention_heads is not in the file, so it is HF's default ",
                    c.num_attention_heads);
  }
  return top.error("head_dim",
                   absl::StrCat("is absent and hidden_size (", c.hidden_size,
                                ") is not a multiple of num_attention_heads (",
                                c.num_attention_heads, ")", defaulted));
}

// The model's shape, with HF LlamaConfig's defaults; validated.
absl::StatusOr<LlamaConfig> parse_shape(const Reader& top, const std::string& where) {
  LlamaConfig c;
  ROTOR_ASSIGN_OR_RETURN(c.vocab_size, top.int_or("vocab_size", 32000));
  ROTOR_ASSIGN_OR_RETURN(c.hidden_size, top.int_or("hidden_size", 4096));
  ROTOR_ASSIGN_OR_RETURN(c.intermediate_size, top.int_or("intermediate_size", 11008));
  ROTOR_ASSIGN_OR_RETURN(c.num_hidden_layers, top.int_or("num_hidden_layers", 32));
  ROTOR_ASSIGN_OR_RETURN(c.num_attention_heads, top.int_or("num_attention_heads", 32));
  ROTOR_ASSIGN_OR_RETURN(c.num_key_value_heads, top.int_or("num_key_value_heads", c.num_attention_heads));
  ROTOR_ASSIGN_OR_RETURN(c.max_position_embeddings, top.int_or("max_position_embeddings", 2048));
  ROTOR_ASSIGN_OR_RETURN(c.rms_norm_eps, top.num_or("rms_norm_eps", 1e-6));
  ROTOR_ASSIGN_OR_RETURN(c.tie_word_embeddings, top.bool_or("tie_word_embeddings", false));
  ROTOR_ASSIGN_OR_RETURN(c.initializer_range, top.num_or("initializer_range", 0.02));
  std::optional<std::string> act;
  ROTOR_ASSIGN_OR_RETURN(act, top.opt_string("hidden_act"));
  c.hidden_act = act.value_or("silu");
  if (c.hidden_act != "silu") {
    return top.error("hidden_act", absl::StrCat("must be \"silu\" (SwiGLU), got \"", c.hidden_act, "\""));
  }
  ROTOR_ASSIGN_OR_RETURN(c.attention_bias, top.bool_or("attention_bias", false));
  if (c.attention_bias) return top.error("attention_bias", "must be false (rotor has no q/k/v/o biases)");
  ROTOR_ASSIGN_OR_RETURN(c.mlp_bias, top.bool_or("mlp_bias", false));
  if (c.mlp_bias) return top.error("mlp_bias", "must be false (rotor has no MLP biases)");
  ROTOR_RETURN_IF_ERROR(parse_head_dim(top, c));
  ROTOR_RETURN_IF_ERROR(with_context(c.validate(), absl::StrCat(where, ": ")));
  return c;
}

// The rope_parameters dict (nullptr when absent): a per-layer-type dict is
// taken when every layer type has the same parameters.
absl::StatusOr<const json*> rope_parameters(const Reader& top) {
  const json* params = top.find("rope_parameters");
  if (params == nullptr) return params;
  if (!params->is_object()) {
    return top.error("rope_parameters", absl::StrCat("must be an object, got ", params->dump()));
  }
  const bool per_layer = !params->empty() && std::all_of(params->begin(), params->end(),
                                                         [](const json& v) { return v.is_object(); });
  if (!per_layer) return params;
  // {"full_attention": {...}, "sliding_attention": {...}}: one RoPE for the
  // whole model only when every layer type has the same parameters.
  const json& first = params->begin().value();
  for (auto it = params->begin(); it != params->end(); ++it) {
    if (it.value() != first) {
      return top.error("rope_parameters",
                       absl::StrCat("is per layer type with different parameters ('",
                                    params->begin().key(), "' vs '", it.key(),
                                    "'); rotor uses one RoPE for every layer"));
    }
  }
  return &first;
}

// rotor's own extra field for static NTK (exported as rope_type default):
// replaces `rope` (which must be the HF RoPE it stands for).
absl::Status apply_rotor_rope(const Reader& top, const std::string& where, int64_t hd, RopeConfig& rope) {
  const json* extra = top.find("rotor_rope");
  if (extra == nullptr) return absl::OkStatus();
  if (!extra->is_object()) return top.error("rotor_rope", "must be an object");
  const Reader er(*extra, where, "rotor_rope.");
  std::optional<std::string> method;
  ROTOR_ASSIGN_OR_RETURN(method, er.opt_string("method"));
  if (method.value_or("") != "ntk") {
    return er.error("method", absl::StrCat("must be \"ntk\", got \"", method.value_or(""), "\""));
  }
  RopeConfig ntk;
  ntk.method = RopeMethod::kNtk;
  ROTOR_ASSIGN_OR_RETURN(ntk.theta, er.req_num("theta", "for method ntk"));
  ROTOR_ASSIGN_OR_RETURN(ntk.factor, er.req_num("factor", "for method ntk"));
  ROTOR_RETURN_IF_ERROR(with_context(validate_rope(ntk, hd), absl::StrCat(where, ": rotor_rope", ": ")));
  if (rope.method != RopeMethod::kNone || ntk_theta(ntk, hd) != rope.theta) {
    return top.error("rotor_rope",
                     absl::StrCat("(ntk, theta ", ntk.theta, ", factor ", ntk.factor,
                                  ", i.e. rope_theta ", ntk_theta(ntk, hd),
                                  ") does not match the HF RoPE (", rope_method_name(rope.method),
                                  ", rope_theta ", rope.theta, ")"));
  }
  rope = ntk;
  return absl::OkStatus();
}

// RoPE: rope_theta + rope_scaling (transformers 4) and/or rope_parameters
// (5), which must agree, then rotor_rope; validated, errors naming the keys.
absl::StatusOr<RopeConfig> parse_rope(const Reader& top, const std::string& where, const LlamaConfig& c) {
  const int64_t hd = c.resolved_head_dim();
  std::optional<double> top_theta;
  ROTOR_ASSIGN_OR_RETURN(top_theta, top.opt_num("rope_theta"));
  RopeContext ctx;
  ctx.max_position_embeddings = c.max_position_embeddings;
  ROTOR_ASSIGN_OR_RETURN(ctx.top_original, top.opt_int("original_max_position_embeddings"));

  const json* scaling = top.find("rope_scaling");
  if (scaling != nullptr && !scaling->is_object()) {
    return top.error("rope_scaling", absl::StrCat("must be an object or null, got ", scaling->dump()));
  }
  const json* params = nullptr;
  ROTOR_ASSIGN_OR_RETURN(params, rope_parameters(top));
  std::optional<double> params_theta;
  if (params != nullptr) {
    const Reader pr(*params, where, "rope_parameters.");
    ROTOR_ASSIGN_OR_RETURN(params_theta, pr.opt_num("rope_theta"));
  }
  if (top_theta && params_theta && *top_theta != *params_theta) {
    return top.error("rope_theta", absl::StrCat("(", *top_theta, ") differs from rope_parameters.rope_theta (",
                                                *params_theta, ")"));
  }
  const double theta = params_theta ? *params_theta : top_theta.value_or(10000.0);

  RopeConfig rope;
  rope.theta = theta;
  std::optional<RopeConfig> from_scaling, from_params;
  if (scaling != nullptr) {
    ROTOR_ASSIGN_OR_RETURN(from_scaling,
                    parse_rope_dict(Reader(*scaling, where, "rope_scaling."), theta, ctx, true));
  }
  if (params != nullptr) {
    ROTOR_ASSIGN_OR_RETURN(from_params,
                    parse_rope_dict(Reader(*params, where, "rope_parameters."), theta, ctx, false));
  }
  if (from_scaling && from_params && !same_rope(*from_scaling, *from_params)) {
    return top.error("rope_scaling",
                     absl::StrCat("(", rope_method_name(from_scaling->method),
                                  ") and rope_parameters (", rope_method_name(from_params->method),
                                  ") describe different RoPE"));
  }
  if (from_scaling) {
    rope = *from_scaling;
  } else if (from_params) {
    rope = *from_params;
  }
  ROTOR_RETURN_IF_ERROR(apply_rotor_rope(top, where, hd, rope));
  // Name the keys the values came from.
  const std::string dict = from_scaling ? "rope_scaling" : from_params ? "rope_parameters" : "";
  const std::string theta_key = params_theta ? "rope_parameters.rope_theta" : "rope_theta";
  ROTOR_RETURN_IF_ERROR(in_hf_rope(where, validate_rope(rope, hd), dict, theta_key));
  return rope;
}

// rotor's own extra field for the logit scalar; none when absent.
absl::StatusOr<LogitScaleConfig> parse_logit_scale(const Reader& top, const std::string& where) {
  LogitScaleConfig s;
  const json* extra = top.find("rotor_logit_scale");
  if (extra == nullptr) return s;
  if (!extra->is_object()) return top.error("rotor_logit_scale", "must be an object");
  const Reader lr(*extra, where, "rotor_logit_scale.");
  std::optional<std::string> kind;
  ROTOR_ASSIGN_OR_RETURN(kind, lr.opt_string("kind"));
  if (!kind) return lr.error("kind", "is required");
  absl::StatusOr<LogitScaleKind> parsed_kind = parse_logit_scale_kind(*kind);
  if (!parsed_kind.ok()) {
    return with_context(parsed_kind.status(), absl::StrCat(where, ": rotor_logit_scale", ": "));
  }
  s.kind = *parsed_kind;
  ROTOR_ASSIGN_OR_RETURN(s.value, lr.num_or("value", s.value));
  ROTOR_ASSIGN_OR_RETURN(s.base_length, lr.int_or("base_length", s.base_length));
  ROTOR_ASSIGN_OR_RETURN(s.skip_layers, lr.int_list_or_empty("skip_layers"));
  ROTOR_ASSIGN_OR_RETURN(s.min, lr.num_or("min", s.min));
  ROTOR_RETURN_IF_ERROR(with_context(validate_logit_scale(s), absl::StrCat(where, ": rotor_logit_scale", ": ")));
  return s;
}

}  // namespace

absl::StatusOr<HfModel> parse_hf_config(const json& config, const std::string& where) {
  if (!config.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": config.json must be a JSON object, got ", config.type_name()));
  }
  const Reader top(config, where, "");
  ROTOR_RETURN_IF_ERROR(check_llama(top));
  HfModel out;
  ROTOR_ASSIGN_OR_RETURN(out.config, parse_shape(top, where));
  ROTOR_ASSIGN_OR_RETURN(out.rope, parse_rope(top, where, out.config));
  out.config.rope_theta = out.rope.theta;
  ROTOR_ASSIGN_OR_RETURN(out.logit_scale, parse_logit_scale(top, where));
  return out;
}

namespace {

constexpr char kExportWhere[] = "HF config export";

absl::Status export_error(const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(kExportWhere, ": ", what));
}

// The model's shape keys of config.json.
json shape_json(const LlamaConfig& c, int64_t hd, const std::string& dtype) {
  json j = json::object();
  j["architectures"] = json::array({"LlamaForCausalLM"});
  j["model_type"] = "llama";
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_key_value_heads;
  j["head_dim"] = hd;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["hidden_act"] = "silu";
  j["attention_bias"] = false;
  j["mlp_bias"] = false;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["initializer_range"] = c.initializer_range;
  j["torch_dtype"] = dtype;
  return j;
}

// Adds the RoPE keys to `j`: rope_theta, rope_scaling (absent for none and
// ntk), rope_parameters, and rotor_rope or the top-level
// original_max_position_embeddings where they are needed.
absl::Status add_rope_json(const RopeConfig& rope, const LlamaConfig& c, int64_t hd, json& j) {
  const int64_t max_pos = c.max_position_embeddings;
  const int64_t big_l = rope.original_max_position;
  double hf_theta = rope.theta;
  json scaling;  // null for none / ntk
  // For yarn and longrope, older transformers derive the factor as
  // max_position_embeddings / original_max_position_embeddings when the
  // original is written: write it only when that ratio is the factor.
  auto original_needed = [&](const char* method) -> absl::StatusOr<bool> {
    if (big_l == max_pos) return false;
    if (static_cast<double>(max_pos) / static_cast<double>(big_l) == rope.factor) return true;
    return export_error(absl::StrCat(
        "rope.method ", method, " with rope.original_max_position (", big_l,
        ") != max_position_embeddings (", max_pos, ") needs max_position_embeddings = rope.factor * "
        "rope.original_max_position (", rope.factor, " * ", big_l,
        "): transformers derives the factor from that ratio"));
  };
  switch (rope.method) {
    case RopeMethod::kNone:
      break;
    case RopeMethod::kNtk:
      // HF has no static NTK: the same frequencies are rope_type default with
      // the scaled base; rotor_rope lets parse_hf_config recover the method.
      hf_theta = ntk_theta(rope, hd);
      j["rotor_rope"] = {{"method", "ntk"}, {"theta", rope.theta}, {"factor", rope.factor}};
      break;
    case RopeMethod::kLinear:
      scaling = {{"rope_type", "linear"}, {"factor", rope.factor}};
      break;
    case RopeMethod::kDynamic:
      if (big_l != max_pos) {
        return export_error(absl::StrCat("rope.method dynamic needs rope.original_max_position (", big_l,
                                         ") == max_position_embeddings (", max_pos,
                                         "): transformers' dynamic NTK scales from max_position_embeddings"));
      }
      scaling = {{"rope_type", "dynamic"}, {"factor", rope.factor}};
      break;
    case RopeMethod::kYarn: {
      scaling = {{"rope_type", "yarn"},
                 {"factor", rope.factor},
                 {"beta_fast", rope.beta_fast},
                 {"beta_slow", rope.beta_slow}};
      bool with_original = false;
      ROTOR_ASSIGN_OR_RETURN(with_original, original_needed("yarn"));
      if (with_original) scaling["original_max_position_embeddings"] = big_l;
      if (rope.attention_factor) scaling["attention_factor"] = *rope.attention_factor;
      if (!rope.truncate) scaling["truncate"] = false;
      break;
    }
    case RopeMethod::kLlama3:
      scaling = {{"rope_type", "llama3"},
                 {"factor", rope.factor},
                 {"low_freq_factor", rope.low_freq_factor},
                 {"high_freq_factor", rope.high_freq_factor},
                 {"original_max_position_embeddings", big_l}};
      break;
    case RopeMethod::kLongRope: {
      scaling = {{"rope_type", "longrope"},
                 {"factor", rope.factor},
                 {"short_factor", rope.short_factor},
                 {"long_factor", rope.long_factor}};
      bool with_original = false;
      ROTOR_ASSIGN_OR_RETURN(with_original, original_needed("longrope"));
      if (with_original) {
        // transformers 4 reads it at the top level (Phi3 style), 5 in the dict.
        scaling["original_max_position_embeddings"] = big_l;
        j["original_max_position_embeddings"] = big_l;
      }
      if (rope.attention_factor) scaling["attention_factor"] = *rope.attention_factor;
      break;
    }
  }
  j["rope_theta"] = hf_theta;
  json params = scaling.is_null() ? json{{"rope_type", "default"}} : scaling;
  params["rope_theta"] = hf_theta;
  if (!scaling.is_null()) j["rope_scaling"] = scaling;
  j["rope_parameters"] = params;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<json> make_hf_config(const HfModel& model, const std::string& dtype) {
  if (dtype != "bfloat16" && dtype != "float16" && dtype != "float32") {
    return export_error(absl::StrCat("dtype must be \"bfloat16\", \"float16\" or \"float32\", got \"", dtype,
                                     "\""));
  }
  const LlamaConfig& c = model.config;
  const RopeConfig& rope = model.rope;
  ROTOR_RETURN_IF_ERROR(with_context(c.validate(), absl::StrCat(kExportWhere, ": ")));
  const int64_t hd = c.resolved_head_dim();
  ROTOR_RETURN_IF_ERROR(with_context(validate_rope(rope, hd), absl::StrCat(kExportWhere, ": ")));
  ROTOR_RETURN_IF_ERROR(with_context(validate_logit_scale(model.logit_scale), absl::StrCat(kExportWhere, ": ")));
  if (rope.theta != c.rope_theta) {
    return export_error(absl::StrCat("rope.theta (", rope.theta, ") differs from model rope_theta (",
                                     c.rope_theta, ")"));
  }
  json j = shape_json(c, hd, dtype);
  ROTOR_RETURN_IF_ERROR(add_rope_json(rope, c, hd, j));
  const LogitScaleConfig& s = model.logit_scale;
  if (s.kind != LogitScaleKind::kNone) {
    j["rotor_logit_scale"] = {{"kind", logit_scale_kind_name(s.kind)},
                              {"value", s.value},
                              {"base_length", s.base_length},
                              {"skip_layers", s.skip_layers},
                              {"min", s.min}};
  }
  return j;
}

}  // namespace rotor
