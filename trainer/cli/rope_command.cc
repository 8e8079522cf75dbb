// `rotor rope`: the command line of trainer/recipe/rope_settings.h. See rope_command.h.
#include "trainer/cli/rope_command.h"

#include <charconv>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "trainer/recipe/rope_settings.h"
#include "kernels/status.h"

namespace rotor {
namespace {

// Splits "a,b,c" into non-negative integers.
absl::StatusOr<std::vector<int64_t>> parse_positions(absl::string_view text) {
  std::vector<int64_t> positions;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    part = absl::StripAsciiWhitespace(part);
    int64_t p = -1;
    const auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), p);
    if (part.empty() || ec != std::errc() || end != part.data() + part.size() || p < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--positions: expected non-negative integers separated by commas, got '", text, "'"));
    }
    positions.push_back(p);
  }
  return positions;
}

absl::StatusOr<int64_t> parse_layers(absl::string_view text) {
  int64_t layers = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), layers);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || layers < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--layers: expected an integer >= 1, got '", text, "'"));
  }
  return layers;
}

constexpr const char* kUsage =
    "usage: rotor rope [RECIPE.yaml] [--set KEY=VALUE ...] [--stage NAME] [--positions P1,P2,...]\n"
    "                  [--layers N]\n"
    "\n"
    "Prints a recipe's RoPE inverse frequencies, attention factor and logit scalars as JSON:\n"
    "  {\"inv_freq\": [...], \"attention_factor\": A,\n"
    "   \"logit_scale\": {\"positions\": [...], \"layers\": [[...], ...]}}\n"
    "where logit_scale.layers[l][j] is the query multiplier of layer l at 0-based position "
    "positions[j].\n"
    "\n"
    "  RECIPE.yaml          optional recipe (any rotor recipe; model.head_dim, rope and\n"
    "                       logit_scale are read, nothing else is required)\n"
    "  --set KEY=VALUE      override a key (VALUE is YAML, lists as [a, b]); repeatable\n"
    "  --stage NAME         a staged recipe: the settings of its stage NAME (required there)\n"
    "  --positions P,...    default 0,1023,2047,4095,8191,16383,32767,65535,131071\n"
    "  --layers N           default max(logit_scale.skip_layers) + 2, or 1\n"
    "\n"
    "keys: ";

struct RopeArgs {
  std::string recipe_path;
  std::vector<std::string> overrides;
  std::optional<std::vector<int64_t>> positions;
  std::optional<int64_t> layers;
  std::string stage;
  bool help = false;
};

absl::StatusOr<RopeArgs> parse_rope_args(const std::vector<std::string>& args) {
  RopeArgs parsed;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--help" || arg == "-h") {
      parsed.help = true;
      continue;
    }
    // "--flag=value" or "--flag value" for the flags that take a value.
    std::optional<std::string> value;
    std::string flag = arg;
    if (absl::StartsWith(arg, "--") && arg.find('=') != std::string::npos) {
      flag = arg.substr(0, arg.find('='));
      value = arg.substr(arg.find('=') + 1);
    }
    if (flag == "--set" || flag == "--positions" || flag == "--layers" || flag == "--stage") {
      if (!value) {
        if (i + 1 >= args.size())
          return absl::InvalidArgumentError(absl::StrCat(flag, " needs a value"));
        value = args[++i];
      }
      if (flag == "--set") {
        parsed.overrides.push_back(*value);
      } else if (flag == "--stage") {
        parsed.stage = *value;
      } else if (flag == "--positions") {
        ROTOR_ASSIGN_OR_RETURN(std::vector<int64_t> p, parse_positions(*value));
        parsed.positions = std::move(p);
      } else {
        ROTOR_ASSIGN_OR_RETURN(int64_t n, parse_layers(*value));
        parsed.layers = n;
      }
    } else if (absl::StartsWith(arg, "-")) {
      return absl::InvalidArgumentError(absl::StrCat("unknown option '", arg, "'"));
    } else if (!parsed.recipe_path.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unexpected argument '", arg, "' (the recipe is '", parsed.recipe_path, "')"));
    } else {
      parsed.recipe_path = arg;
    }
  }
  return parsed;
}

}  // namespace

int run_rope_command(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  auto fail = [&err](const absl::Status& status) {
    err << "rotor rope: " << status.message() << "\n";
    return 2;
  };
  absl::StatusOr<RopeArgs> parsed = parse_rope_args(args);
  if (!parsed.ok()) return fail(parsed.status());
  if (parsed->help) {
    out << kUsage << absl::StrJoin(rope_setting_keys(), ", ") << "\n";
    return 0;
  }
  absl::StatusOr<RopeSettings> settings =
      load_rope_settings(parsed->recipe_path, parsed->overrides, parsed->stage);
  if (!settings.ok()) return fail(settings.status());
  const std::vector<int64_t> positions = parsed->positions.value_or(default_rope_positions());
  const int64_t layers = parsed->layers.value_or(default_rope_layers(settings->logit_scale));
  absl::StatusOr<nlohmann::json> json = rope_json(*settings, positions, layers);
  if (!json.ok()) return fail(json.status());
  out << json->dump() << "\n";
  return out.good() ? 0 : fail(absl::DataLossError("cannot write the output"));
}

}  // namespace rotor
