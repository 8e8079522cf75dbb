// RULER's synthetic tasks. See ruler_tasks.h.
#include "eval/ruler_tasks.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numbers>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "eval/ruler_text.h"
#include "kernels/random.h"
#include "kernels/status.h"

namespace rotor::ruler {

struct Generator::Built {
  std::string text;
  std::vector<std::string> answers;
  bool valid = true;  // false: n is below what the task's format needs
};

namespace {

constexpr char kNoise[] =
    "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";

// ------------------------------------------------------------------ niah

enum class Haystack { kNoise, kEssay, kNeedles };

struct NiahSpec {
  Haystack haystack;
  bool uuid_keys, uuid_values;
  int keys, values, queries;
};

NiahSpec niah_spec(Task t) {
  switch (t) {
    case Task::kNiahSingle1: return {Haystack::kNoise, false, false, 1, 1, 1};
    case Task::kNiahSingle2: return {Haystack::kEssay, false, false, 1, 1, 1};
    case Task::kNiahSingle3: return {Haystack::kEssay, false, true, 1, 1, 1};
    case Task::kNiahMultikey1: return {Haystack::kEssay, false, false, 4, 1, 1};
    case Task::kNiahMultikey2: return {Haystack::kNeedles, false, false, 1, 1, 1};
    case Task::kNiahMultikey3: return {Haystack::kNeedles, true, true, 1, 1, 1};
    case Task::kNiahMultivalue: return {Haystack::kEssay, false, false, 1, 4, 1};
    case Task::kNiahMultiquery: return {Haystack::kEssay, false, false, 4, 1, 4};
    default: ROTOR_CHECK(false) << "not a niah task"; return {};
  }
}

bool is_niah(Task t) { return t != Task::kVt && t != Task::kCwe && t != Task::kFwe; }

std::string uuid4(Rng& rng) {
  uint64_t hi = rng.next(), lo = rng.next();
  hi = (hi & ~0xF000ull) | 0x4000ull;                       // version 4
  lo = (lo & 0x3FFFFFFFFFFFFFFFull) | 0x8000000000000000ull;  // variant 10
  return absl::StrFormat("%08x-%04x-%04x-%04x-%012x", hi >> 32, (hi >> 16) & 0xFFFF, hi & 0xFFFF,
                         lo >> 48, lo & 0xFFFFFFFFFFFFull);
}

std::string word_key(Rng& rng, const std::vector<std::string>& words) {
  return absl::StrCat(words[rng.below(words.size())], "-", words[rng.below(words.size())]);
}

std::string number7(Rng& rng) { return absl::StrCat(rng.between(1000000, 9999999)); }

std::string needle(bool uuid_values, const std::string& key, const std::string& value) {
  return absl::StrCat("One of the special magic ", uuid_values ? "uuids" : "numbers", " for ", key,
                      " is: ", value, ".");
}

// RULER's niah template with its answer prefix; one asked value turns
// "Some ... are" into "A ... is" and the plural into the singular.
std::string niah_prompt(bool uuid_values, bool single, const std::string& context,
                        const std::string& query) {
  const std::string type = uuid_values ? (single ? "uuid" : "uuids") : (single ? "number" : "numbers");
  if (single) {
    return absl::StrCat("A special magic ", type, " is hidden within the following text. Make sure to memorize it. "
                        "I will quiz you about the ", type, " afterwards.\n", context,
                        "\nWhat is the special magic ", type, " for ", query,
                        " mentioned in the provided text? The special magic ", type, " for ", query,
                        " mentioned in the provided text is");
  }
  return absl::StrCat("Some special magic ", type, " are hidden within the following text. Make sure to memorize "
                      "it. I will quiz you about the ", type, " afterwards.\n", context,
                      "\nWhat are all the special magic ", type, " for ", query,
                      " mentioned in the provided text? The special magic ", type, " for ", query,
                      " mentioned in the provided text are");
}

// RULER's essay insertion depths: 40 points from 0 to 100 percent.
int essay_depth_percent(int64_t i) { return static_cast<int>(std::lround(static_cast<double>(i) * 100.0 / 39.0)); }

// A haystack of `n` units with `needles` inserted; the first needle (the
// anchor) at `depth`, the others at random places.
std::string niah_context(const NiahSpec& spec, int64_t n, double depth, const std::vector<std::string>& needles,
                         const std::set<std::string>& real_keys, Rng& rng,
                         const Resources& res) {
  const int64_t m = static_cast<int64_t>(needles.size());
  if (spec.haystack == Haystack::kEssay) {
    std::vector<std::string> words;
    words.reserve(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) words.push_back(res.essay[static_cast<size_t>(i) % res.essay.size()]);
    const std::vector<std::string> sents = split_sentences(absl::StrJoin(words, " "));
    const int64_t s = static_cast<int64_t>(sents.size());
    // The sentence boundary nearest to a fraction of the text's characters
    // (RULER takes a fraction of the sentence count; long sentences then
    // skew the depth).
    std::vector<double> starts = {0};  // characters before sentence b
    for (const std::string& sent : sents) starts.push_back(starts.back() + static_cast<double>(sent.size() + 1));
    auto boundary = [&](double fraction) {
      const double target = fraction * starts.back();
      int64_t best = 0;
      for (int64_t b = 1; b <= s; ++b)
        if (std::fabs(starts[static_cast<size_t>(b)] - target) < std::fabs(starts[static_cast<size_t>(best)] - target))
          best = b;
      return best;
    };
    // (sentence boundary, needle): the anchor at depth, the others at grid depths.
    std::vector<std::pair<int64_t, int64_t>> at = {{boundary(depth), 0}};
    const std::vector<int64_t> grid = rng.sample(40, m - 1);
    for (int64_t j = 1; j < m; ++j)
      at.push_back({boundary(essay_depth_percent(grid[static_cast<size_t>(j - 1)]) / 100.0), j});
    std::stable_sort(at.begin(), at.end(), [](auto a, auto b) { return a.first < b.first; });
    std::vector<std::string> parts;
    int64_t last = 0;
    for (const auto& [pos, j] : at) {
      if (pos > last) parts.push_back(absl::StrJoin(sents.begin() + last, sents.begin() + pos, " "));
      parts.push_back(needles[static_cast<size_t>(j)]);
      last = std::max(last, pos);
    }
    if (last < s) parts.push_back(absl::StrJoin(sents.begin() + last, sents.end(), " "));
    return absl::StrJoin(parts, " ");
  }
  // Line haystacks: n noise sentences, or n needles with keys of their own.
  std::vector<std::string> items;
  items.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    if (spec.haystack == Haystack::kNoise) {
      items.push_back(kNoise);
      continue;
    }
    std::string key;
    do {
      key = spec.uuid_keys ? uuid4(rng) : word_key(rng, res.words);
    } while (real_keys.count(key));
    items.push_back(needle(spec.uuid_values, key, spec.uuid_values ? uuid4(rng) : number7(rng)));
  }
  // Slots 0..n (before item i, or after the last); one needle per slot.
  const int64_t anchor = std::clamp<int64_t>(std::llround(depth * static_cast<double>(n)), 0, n);
  std::vector<int64_t> slot_of(static_cast<size_t>(m), anchor);
  std::vector<int64_t> free_slots = rng.sample(n, m - 1);  // of the n slots other than the anchor's
  for (int64_t j = 1; j < m; ++j) {
    const int64_t f = free_slots[static_cast<size_t>(j - 1)];
    slot_of[static_cast<size_t>(j)] = f < anchor ? f : f + 1;
  }
  std::vector<std::vector<int64_t>> in_slot(static_cast<size_t>(n + 1));
  for (int64_t j = 0; j < m; ++j) in_slot[static_cast<size_t>(slot_of[static_cast<size_t>(j)])].push_back(j);
  std::vector<std::string> lines;
  for (int64_t i = 0; i <= n; ++i) {
    for (int64_t j : in_slot[static_cast<size_t>(i)]) lines.push_back(needles[static_cast<size_t>(j)]);
    if (i < n) lines.push_back(std::move(items[static_cast<size_t>(i)]));
  }
  return absl::StrJoin(lines, "\n");
}

// ------------------------------------------------------------------ vt

std::string vt_prompt(const std::string& context, const std::string& value, int64_t num_v) {
  return absl::StrCat(
      "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n", context,
      "\nQuestion: Find all variables that are assigned the value ", value,
      " in the text above. Answer: According to the chain(s) of variable assignment in the text above, ",
      num_v, " variables are assgined the value ", value, ", they are: ");
}

std::vector<std::string> vt_names(Rng& rng, int64_t count, int letters, std::set<std::string>& taken) {
  std::vector<std::string> out;
  while (static_cast<int64_t>(out.size()) < count) {
    std::string v;
    for (int i = 0; i < letters; ++i) v += static_cast<char>('A' + rng.below(26));
    if (taken.insert(v).second) out.push_back(v);
  }
  return out;
}

// `n` noise sentences with the chain's lines at sorted random places (RULER:
// lines joined by spaces, each noise sentence ending in a newline).
std::string vt_context(const std::vector<std::string>& names, const std::string& value, int64_t n, Rng& rng) {
  std::vector<std::string> chain = {absl::StrCat("VAR ", names[0], " = ", value)};
  for (size_t j = 1; j < names.size(); ++j) chain.push_back(absl::StrCat("VAR ", names[j], " = VAR ", names[j - 1], " "));
  const int64_t c = static_cast<int64_t>(chain.size());
  std::vector<int64_t> pos;
  if (n >= c) {
    pos = rng.sample(n, c);
  } else {
    for (int64_t j = 0; j < c; ++j) pos.push_back(static_cast<int64_t>(rng.below(static_cast<uint64_t>(n + 1))));
  }
  std::sort(pos.begin(), pos.end());
  std::vector<std::string> items(static_cast<size_t>(n), absl::StrCat(kNoise, "\n"));
  for (int64_t j = 0; j < c; ++j) {
    const int64_t at = std::min<int64_t>(pos[static_cast<size_t>(j)] + j, static_cast<int64_t>(items.size()));
    items.insert(items.begin() + at, chain[static_cast<size_t>(j)]);
  }
  return absl::StrReplaceAll(absl::StrJoin(items, " "), {{". \n", ".\n"}});
}

constexpr int64_t kVtHops = 4;
constexpr int64_t kVtExampleTokens = 500;  // RULER sizes its example for 500 tokens

// The solved example before the question: 3-letter names, `m` noise sentences.
std::string vt_example(Rng& rng, int64_t m, const std::string& main_value, std::set<std::string>& taken) {
  const std::vector<std::string> names = vt_names(rng, kVtHops + 1, 3, taken);
  std::string value;
  do {
    value = absl::StrCat(rng.between(10000, 99999));
  } while (value == main_value);
  return absl::StrCat(vt_prompt(vt_context(names, value, m, rng), value, kVtHops + 1),
                      absl::StrJoin(names, " "));
}

// ------------------------------------------------------------------ cwe, fwe

std::string cwe_prompt(const std::string& context) {
  return absl::StrCat(
      "Below is a numbered list of words. In these words, some appear more often than others. Memorize the "
      "ones that appear most often.\n",
      context,
      "\nQuestion: What are the 10 most common words in the above list? Answer: The top 10 words that appear "
      "most often in the list are:");
}

std::string numbered(const std::vector<std::string>& words) {
  std::string out;
  for (size_t i = 0; i < words.size(); ++i) absl::StrAppend(&out, i ? " " : "", i + 1, ". ", words[i]);
  return out;
}

// `count` words of the list, the first 10 repeated `common` times, the others `rare` times, shuffled.
std::pair<std::string, std::vector<std::string>> cwe_list(Rng& rng, const std::vector<std::string>& words,
                                                          int64_t count, int common, int rare) {
  std::vector<std::string> chosen;
  for (int64_t i : rng.sample(static_cast<int64_t>(words.size()), count)) chosen.push_back(words[static_cast<size_t>(i)]);
  std::vector<std::string> list;
  for (int64_t i = 0; i < count; ++i)
    for (int r = 0; r < (i < 10 ? common : rare); ++r) list.push_back(chosen[static_cast<size_t>(i)]);
  rng.shuffle(list);
  return {numbered(list), std::vector<std::string>(chosen.begin(), chosen.begin() + 10)};
}

std::string fwe_prompt(const std::string& context) {
  return absl::StrCat(
      "Read the following coded text and track the frequency of each coded word. Find the three most "
      "frequently appeared coded words. ",
      context,
      "\nQuestion: Do not provide any explanation. Please ignore the dots '....'. What are the three most "
      "frequently appeared words in the above coded text? Answer: According to the coded text above, the "
      "three most frequently appeared words are:");
}

// Occurrences of the rank-k word (k from 1) among `n` words, Zipf alpha 2.
int64_t zipf_count(int64_t n, int64_t k) {
  constexpr double kZeta2 = std::numbers::pi * std::numbers::pi / 6;
  return static_cast<int64_t>(static_cast<double>(n) / (static_cast<double>(k * k) * kZeta2));
}

// The smallest haystack each task's format needs.
int64_t min_size(Task t) {
  if (t == Task::kCwe) return 11;  // 10 common words and one rare
  if (t == Task::kFwe) {
    // From here on the rank-4 count is above the rank-5 count for every n
    // (their difference n (1/16 - 1/25) / zeta(2) is at least 1), so the 3
    // answers (ranks 2-4) are the most frequent words after "...".
    constexpr double kZeta2 = std::numbers::pi * std::numbers::pi / 6;
    return static_cast<int64_t>(std::ceil(kZeta2 / (1.0 / 16 - 1.0 / 25)));
  }
  if (is_niah(t)) {
    const NiahSpec s = niah_spec(t);
    return s.haystack == Haystack::kEssay ? 1 : std::max(1, s.keys * s.values - 1);
  }
  return 1;
}

// The largest haystack a task can take (cwe: distinct words of the list).
int64_t max_size(Task t, const Resources& r) {
  if (t == Task::kCwe) return static_cast<int64_t>(r.words.size());
  return int64_t{1} << 26;
}

// The tokens of a prompt at haystack size n; kInvalid when the task's format
// cannot take n.
constexpr int64_t kInvalid = std::numeric_limits<int64_t>::max();
using Measure = std::function<absl::StatusOr<int64_t>(int64_t n)>;

// An n in [lo, hi) whose prompt takes at most `target` tokens and at least
// target - slack (or the largest such n when none does), given t_lo =
// measure(lo) <= target < t_hi = measure(hi). Tokens grow nearly linearly
// with the haystack, so a probe interpolates between the bracket's ends (2-4
// encodes of a 128K-token prompt, against ~17 for bisection); after two
// probes that did not halve the bracket the next one bisects.
absl::StatusOr<int64_t> fitting_size(const Measure& measure, int64_t target, int64_t slack, int64_t lo,
                                     int64_t t_lo, int64_t hi, int64_t t_hi) {
  int slow = 0;
  while (hi - lo > 1 && t_lo < target - slack) {
    int64_t mid = lo + (hi - lo) / 2;
    if (slow < 2 && t_hi != kInvalid && t_hi > t_lo) {
      const double f = static_cast<double>(target - slack / 2 - t_lo) / static_cast<double>(t_hi - t_lo);
      mid = std::clamp<int64_t>(lo + static_cast<int64_t>(f * static_cast<double>(hi - lo)), lo + 1, hi - 1);
    }
    const int64_t before = hi - lo;
    ROTOR_ASSIGN_OR_RETURN(int64_t t, measure(mid));
    if (t <= target) {
      lo = mid;
      t_lo = t;
    } else {
      hi = mid;
      t_hi = t;
    }
    slow = 2 * (hi - lo) > before ? slow + 1 : 0;  // a bisection halves: slow is 0 again
  }
  return lo;
}

// How close to the budget a prompt must come: 0.2% of the length, at least
// 16 tokens (RULER itself sizes in steps of 500 essay words or 25 sentences).
int64_t fill_slack(int64_t length) { return std::max<int64_t>(16, length / 500); }

}  // namespace

// ------------------------------------------------------------------ tables

const std::vector<TaskInfo>& all_tasks() {
  static const std::vector<TaskInfo> tasks = {
      {Task::kNiahSingle1, "niah_single_1", 128, true, false},
      {Task::kNiahSingle2, "niah_single_2", 128, true, true},
      {Task::kNiahSingle3, "niah_single_3", 128, true, true},
      {Task::kNiahMultikey1, "niah_multikey_1", 128, true, true},
      {Task::kNiahMultikey2, "niah_multikey_2", 128, true, false},
      {Task::kNiahMultikey3, "niah_multikey_3", 128, false, false},
      {Task::kNiahMultivalue, "niah_multivalue", 128, true, true},
      {Task::kNiahMultiquery, "niah_multiquery", 128, true, true},
      {Task::kVt, "vt", 30, false, false},
      {Task::kCwe, "cwe", 120, true, false},
      {Task::kFwe, "fwe", 50, false, false},
  };
  return tasks;
}

const TaskInfo& task_info(Task task) {
  for (const TaskInfo& t : all_tasks())
    if (t.task == task) return t;
  ROTOR_CHECK(false) << "unknown ruler task";
  return all_tasks().front();
}

absl::StatusOr<std::vector<Task>> parse_tasks(std::string_view list) {
  std::vector<Task> out;
  for (absl::string_view word : absl::StrSplit(absl::string_view(list.data(), list.size()), ',')) {
    const TaskInfo* found = nullptr;
    for (const TaskInfo& t : all_tasks())
      if (word == t.name) found = &t;
    if (found == nullptr) {
      std::vector<std::string> names;
      for (const TaskInfo& t : all_tasks()) names.push_back(t.name);
      return absl::InvalidArgumentError(absl::StrCat("unknown RULER task '", word, "' (valid: ",
                                                     absl::StrJoin(names, ", "), ")"));
    }
    if (std::find(out.begin(), out.end(), found->task) == out.end()) out.push_back(found->task);
  }
  return out;
}

double sample_depth(int64_t index) {
  double d = 0, unit = 0.5;
  for (uint64_t i = static_cast<uint64_t>(index); i > 0; i >>= 1, unit /= 2)
    if (i & 1) d += unit;
  return d;
}

// ------------------------------------------------------------------ generator

Generator::Generator(const Tokenizer& tokenizer, Resources resources, uint64_t seed)
    : tokenizer_(tokenizer), resources_(std::move(resources)), seed_(seed) {}

uint64_t Generator::sample_seed(Task task, int64_t index) const {
  return mix64(mix64(seed_ ^ hash_name(task_info(task).name)) ^ static_cast<uint64_t>(index));
}

Generator::Built Generator::build(Task task, int64_t length, int64_t n, uint64_t seed, double depth) const {
  Rng rng(seed);
  Built b;
  if (is_niah(task)) {
    const NiahSpec spec = niah_spec(task);
    const int k = std::max(spec.keys, spec.queries);
    std::set<std::string> keys_seen, values_seen;
    std::vector<std::string> keys;
    std::vector<std::vector<std::string>> values(static_cast<size_t>(k));
    while (static_cast<int>(keys.size()) < k) {
      std::string key = spec.uuid_keys ? uuid4(rng) : word_key(rng, resources_.words);
      if (keys_seen.insert(key).second) keys.push_back(std::move(key));
    }
    for (int i = 0; i < k; ++i)
      while (static_cast<int>(values[static_cast<size_t>(i)].size()) < spec.values) {
        std::string v = spec.uuid_values ? uuid4(rng) : number7(rng);
        if (values_seen.insert(v).second) values[static_cast<size_t>(i)].push_back(std::move(v));
      }
    const std::vector<int64_t> asked = rng.sample(k, spec.queries);
    // The anchor (first value of the first asked key) first, the others shuffled.
    std::vector<std::string> needles = {needle(spec.uuid_values, keys[static_cast<size_t>(asked[0])],
                                               values[static_cast<size_t>(asked[0])][0])};
    std::vector<std::string> others;
    for (int i = 0; i < k; ++i)
      for (int v = 0; v < spec.values; ++v)
        if (i != asked[0] || v != 0) others.push_back(needle(spec.uuid_values, keys[static_cast<size_t>(i)], values[static_cast<size_t>(i)][static_cast<size_t>(v)]));
    rng.shuffle(others);
    needles.insert(needles.end(), others.begin(), others.end());
    std::vector<std::string> query;
    for (int64_t i : asked) {
      query.push_back(keys[static_cast<size_t>(i)]);
      for (const std::string& v : values[static_cast<size_t>(i)]) b.answers.push_back(v);
    }
    const std::string q = query.size() == 1 ? query[0]
                                            : absl::StrCat(absl::StrJoin(query.begin(), query.end() - 1, ", "),
                                                           ", and ", query.back());
    b.valid = n >= 1 && (spec.haystack == Haystack::kEssay || n + 1 >= static_cast<int64_t>(needles.size()));
    if (!b.valid) return b;
    const std::string context = niah_context(spec, n, depth, needles, keys_seen, rng, resources_);
    b.text = niah_prompt(spec.uuid_values, spec.queries * spec.values == 1, context, q);
    return b;
  }
  if (task == Task::kVt) {
    b.valid = n >= 1;
    if (!b.valid) return b;
    std::set<std::string> taken;
    const std::vector<std::string> names = vt_names(rng, kVtHops + 1, 5, taken);
    const std::string value = absl::StrCat(rng.between(10000, 99999));
    const std::string example = vt_example(rng, vt_example_noise_ < 0 ? 1 : vt_example_noise_, value, taken);
    b.text = absl::StrCat(example, "\n\n", vt_prompt(vt_context(names, value, n, rng), value, kVtHops + 1));
    b.answers = names;
    return b;
  }
  if (task == Task::kCwe) {
    const bool small = cwe_small(length);
    b.valid = n >= 11 && n <= static_cast<int64_t>(resources_.words.size()) &&
              resources_.words.size() >= 40;
    if (!b.valid) return b;
    auto [example, example_answer] = cwe_list(rng, resources_.words, small ? 20 : 40, small ? 3 : 10, small ? 1 : 3);
    auto [context, answer] = cwe_list(rng, resources_.words, n, small ? 6 : 30, small ? 1 : 3);
    b.text = absl::StrCat(cwe_prompt(example), numbered(example_answer), "\n", cwe_prompt(context));
    b.answers = answer;
    return b;
  }
  // fwe: RULER's vocabulary of length / 50 coded words.
  const int64_t v = length / 50;
  std::set<std::string> seen;
  std::vector<std::string> vocab;
  while (static_cast<int64_t>(vocab.size()) < v) {
    std::string w;
    for (int i = 0; i < 6; ++i) w += static_cast<char>('a' + rng.below(26));
    if (seen.insert(w).second) vocab.push_back(w);
  }
  std::sort(vocab.begin(), vocab.end());
  rng.shuffle(vocab);
  b.valid = v >= 5 && zipf_count(n, 4) > zipf_count(n, 5);
  if (!b.valid) return b;
  vocab[0] = "...";  // the most frequent word is noise
  std::vector<std::string> list;
  for (int64_t k = 1; k <= v; ++k)
    for (int64_t c = zipf_count(n, k); c > 0; --c) list.push_back(vocab[static_cast<size_t>(k - 1)]);
  rng.shuffle(list);
  b.text = fwe_prompt(absl::StrJoin(list, " "));
  b.answers = {vocab[1], vocab[2], vocab[3]};
  return b;
}

absl::StatusOr<std::vector<int32_t>> Generator::encode(const Built& b) const {
  absl::StatusOr<std::vector<int32_t>> ids = tokenizer_.encode(b.text);
  if (!ids.ok()) return absl::Status(ids.status().code(), absl::StrCat("tokenizer ", tokenizer_.spec(), ": ", ids.status().message()));
  return ids;
}

absl::StatusOr<int64_t> Generator::tokens(const Built& b) const {
  ROTOR_ASSIGN_OR_RETURN(std::vector<int32_t> ids, encode(b));
  return static_cast<int64_t>(ids.size());
}

bool Generator::cwe_small(int64_t length) const {
  auto it = cwe_small_.find(length);
  return it == cwe_small_.end() ? length < 4096 : it->second;
}

absl::Status Generator::choose_cwe_repeats(int64_t length) {
  if (cwe_small_.count(length)) return absl::OkStatus();
  cwe_small_[length] = true;
  if (length < 4096) return absl::OkStatus();
  // RULER's larger repeats from 4K, when their smallest prompt fits.
  cwe_small_[length] = false;
  const Built b = build(Task::kCwe, length, min_size(Task::kCwe), sample_seed(Task::kCwe, 0), -1);
  ROTOR_ASSIGN_OR_RETURN(int64_t t, tokens(b));
  if (!b.valid || t + task_info(Task::kCwe).max_new_tokens > length) cwe_small_[length] = true;
  return absl::OkStatus();
}

int64_t Generator::vt_example_noise() {
  if (vt_example_noise_ >= 0) return vt_example_noise_;
  // As many noise sentences as keep a reference example (seed 0) within
  // RULER's 500 tokens with vt's 30 answer tokens; at least one.
  int64_t m = 1;
  for (; m < 64; ++m) {
    Rng rng(0);
    std::set<std::string> taken;
    absl::StatusOr<std::vector<int32_t>> ids = tokenizer_.encode(vt_example(rng, m + 1, "", taken));
    if (!ids.ok() || static_cast<int64_t>(ids->size()) + task_info(Task::kVt).max_new_tokens > kVtExampleTokens) break;
  }
  vt_example_noise_ = m;
  return m;
}

absl::StatusOr<int64_t> Generator::minimum_length(Task task) {
  // The smallest L at which the smallest haystack of samples 0-7 fits (their
  // keys differ in length): the format depends on L (cwe's repeats, fwe's
  // vocabulary), so search L itself.
  if (auto it = minimums_.find(task); it != minimums_.end()) return it->second;
  if (task == Task::kVt) vt_example_noise();
  const int64_t budget = task_info(task).max_new_tokens;
  auto fits_at = [&](int64_t length) -> absl::StatusOr<bool> {
    if (task == Task::kCwe) ROTOR_RETURN_IF_ERROR(choose_cwe_repeats(length));
    for (int64_t i = 0; i < 8; ++i) {
      const Built b = build(task, length, min_size(task), sample_seed(task, i), is_niah(task) ? sample_depth(i) : -1);
      if (!b.valid) return false;
      ROTOR_ASSIGN_OR_RETURN(int64_t t, tokens(b));
      if (t + budget > length) return false;
    }
    return true;
  };
  int64_t lo = budget, hi = 2 * budget;  // lo does not fit (no room for a prompt)
  for (;;) {
    ROTOR_ASSIGN_OR_RETURN(bool ok, fits_at(hi));
    if (ok) break;
    lo = hi;
    hi *= 2;
    if (hi > (int64_t{1} << 30)) return absl::InternalError("no length fits the smallest prompt");
  }
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    ROTOR_ASSIGN_OR_RETURN(bool ok, fits_at(mid));
    (ok ? hi : lo) = mid;
  }
  minimums_[task] = hi;
  return hi;
}

// The largest haystack whose prompt fits `length` with the answer budget,
// for sample 0 (the other samples start from it).
absl::StatusOr<int64_t> Generator::fitted_size(Task task, int64_t length) {
  if (auto it = sizes_.find({task, length}); it != sizes_.end()) return it->second;
  const int64_t target = length - task_info(task).max_new_tokens;
  const Measure measure = [&](int64_t n) -> absl::StatusOr<int64_t> {
    const Built b = build(task, length, n, sample_seed(task, 0), is_niah(task) ? sample_depth(0) : -1);
    if (!b.valid) return kInvalid;
    return tokens(b);
  };
  int64_t lo = min_size(task);
  const int64_t cap = max_size(task, resources_);
  ROTOR_ASSIGN_OR_RETURN(int64_t t_lo, measure(lo));
  if (t_lo > target) {
    ROTOR_ASSIGN_OR_RETURN(int64_t least, minimum_length(task));
    return absl::InvalidArgumentError(absl::StrCat(
        "length ", length, " is too short for RULER task ", task_info(task).name,
        ": its template with the smallest haystack and the ", task_info(task).max_new_tokens,
        "-token answer need lengths of at least ", least));
  }
  // A first miss: extrapolate the tokens per haystack unit, aim 10% past the
  // target, double while that still fits.
  int64_t hi = std::min(cap, lo + 64);
  ROTOR_ASSIGN_OR_RETURN(int64_t t_hi, measure(hi));
  if (t_hi <= target && t_hi > t_lo) {
    const double per_unit = static_cast<double>(t_hi - t_lo) / static_cast<double>(hi - lo);
    lo = hi;
    t_lo = t_hi;
    hi = std::min<int64_t>(cap, lo + 1 + static_cast<int64_t>(1.1 * static_cast<double>(target - t_lo) / per_unit));
    ROTOR_ASSIGN_OR_RETURN(t_hi, measure(hi));
  }
  while (t_hi <= target && hi < cap) {
    lo = hi;
    t_lo = t_hi;
    hi = std::min(cap, 2 * hi);
    ROTOR_ASSIGN_OR_RETURN(t_hi, measure(hi));
  }
  int64_t n = hi;
  if (t_hi > target) {
    ROTOR_ASSIGN_OR_RETURN(n, fitting_size(measure, target, fill_slack(length), lo, t_lo, hi, t_hi));
  }
  sizes_[{task, length}] = n;
  return n;
}

absl::StatusOr<Sample> Generator::sample(Task task, int64_t length, int64_t index) {
  const TaskInfo& info = task_info(task);
  if (info.needs_words && resources_.words.empty())
    return absl::InvalidArgumentError(absl::StrCat("RULER task ", info.name, " needs the word list"));
  if (info.needs_essay && resources_.essay.empty())
    return absl::InvalidArgumentError(absl::StrCat("RULER task ", info.name, " needs an essay haystack"));
  if (index < 0) return absl::InvalidArgumentError(absl::StrCat("sample index ", index, " < 0"));
  if (task == Task::kVt) vt_example_noise();
  if (task == Task::kCwe) ROTOR_RETURN_IF_ERROR(choose_cwe_repeats(length));
  ROTOR_ASSIGN_OR_RETURN(int64_t n, fitted_size(task, length));
  const uint64_t seed = sample_seed(task, index);
  const double depth = is_niah(task) ? sample_depth(index) : -1;
  const int64_t budget = info.max_new_tokens;
  Built b = build(task, length, n, seed, depth);
  ROTOR_ASSIGN_OR_RETURN(std::vector<int32_t> ids, encode(b));
  int64_t t = static_cast<int64_t>(ids.size());
  if (t + budget > length) {  // this sample's keys are longer: the largest size that fits
    const Measure measure = [&](int64_t m) -> absl::StatusOr<int64_t> {
      const Built bm = build(task, length, m, seed, depth);
      if (!bm.valid) return kInvalid;
      return tokens(bm);
    };
    // Gallop down from n to a fit (the first step twice the overshoot at
    // this prompt's tokens per unit), then search between.
    int64_t hi = n, t_hi = t, lo = n, t_lo = t;
    const int64_t first = std::max<int64_t>(1, 2 * (t - (length - budget)) * n / std::max<int64_t>(t, 1));
    for (int64_t step = first; t_lo > length - budget; step *= 2) {
      if (lo == min_size(task)) {
        return absl::InvalidArgumentError(absl::StrCat("length ", length, " is too short for sample ", index,
                                                       " of RULER task ", info.name));
      }
      hi = lo;
      t_hi = t_lo;
      lo = std::max(min_size(task), n - step);
      ROTOR_ASSIGN_OR_RETURN(t_lo, measure(lo));
    }
    ROTOR_ASSIGN_OR_RETURN(n, fitting_size(measure, length - budget, fill_slack(length), lo, t_lo, hi, t_hi));
    b = build(task, length, n, seed, depth);
    ROTOR_ASSIGN_OR_RETURN(ids, encode(b));
    t = static_cast<int64_t>(ids.size());
  }
  if (10 * (t + budget) < 8 * length) {
    return absl::FailedPreconditionError(absl::StrCat(
        "RULER task ", info.name, " at length ", length, ": the prompt fills only ", t + budget, " tokens (",
        n, " haystack units, the most there are), below 80% of the length"));
  }
  Sample s;
  s.task = task;
  s.length = length;
  s.index = index;
  s.input = std::move(b.text);
  s.ids = std::move(ids);
  s.answers = std::move(b.answers);
  s.max_new_tokens = budget;
  s.haystack = n;
  s.depth = depth;
  return s;
}

}  // namespace rotor::ruler
