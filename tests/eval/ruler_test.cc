// RULER's tasks (eval/ruler_tasks.h) and scoring (eval/ruler.h), checked
// against an independent solver written here from the task descriptions: it
// reads only the prompt text (finds the needles of the asked keys, follows
// the VAR chain, counts the words) and must find exactly the expected
// answers of every sample, for every task, at several lengths, seeds and
// both tokenizer kinds (bytes and a SentencePiece model trained here). Also:
// the prompt fills 80-100% of its length with the answer budget, the niah
// needle sits at the sample's depth, a sample is a pure function of its
// inputs, and scoring gives 1 / 0 / partial for right / empty or wrong /
// half-right answers.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "eval/ruler.h"
#include "eval/ruler_tasks.h"
#include "eval/ruler_text.h"
#include "nlohmann/json.hpp"

namespace rotor::ruler {
namespace {

namespace fs = std::filesystem;

// ------------------------------------------------------------------ solver

std::string between(const std::string& s, const std::string& from, size_t start, const std::string& to) {
  const size_t a = s.find(from, start);
  if (a == std::string::npos) return "";
  const size_t b = s.find(to, a + from.size());
  return b == std::string::npos ? "" : s.substr(a + from.size(), b - a - from.size());
}

struct NiahFound {
  std::vector<std::string> answers;  // values of the asked keys, in the order asked
  double anchor_depth = -1;          // where the first asked value's needle sits in the context
  int needles = 0;
};

NiahFound solve_niah(const std::string& text) {
  NiahFound f;
  const size_t q = text.rfind("\nWhat ");
  const std::string query = between(text, " for ", q, " mentioned in the provided text?");
  std::vector<std::string> keys;
  for (absl::string_view part : absl::StrSplit(query, ", ")) {
    std::string k(part);
    if (k.rfind("and ", 0) == 0) k = k.substr(4);
    keys.push_back(k);
  }
  const size_t context_start = text.find('\n') + 1;
  std::multimap<std::string, std::pair<std::string, size_t>> needles;  // key -> (value, offset)
  for (size_t at = text.find("One of the special magic ", context_start); at != std::string::npos && at < q;
       at = text.find("One of the special magic ", at + 1)) {
    const std::string key = between(text, " for ", at, " is: ");
    const std::string value = between(text, " is: ", at, ".");
    needles.insert({key, {value, at}});
    ++f.needles;
  }
  for (const std::string& k : keys) {
    auto [lo, hi] = needles.equal_range(k);
    std::vector<std::pair<size_t, std::string>> found;
    for (auto it = lo; it != hi; ++it) found.push_back({it->second.second, it->second.first});
    for (const auto& [offset, value] : found) f.answers.push_back(value);
  }
  return f;
}

std::vector<std::string> solve_vt(const std::string& text) {
  const size_t main = text.rfind("Memorize and track the chain(s)");
  const std::string value = between(text, "assigned the value ", main, " in the text above.");
  std::map<std::string, std::string> assigned;  // name -> number or "VAR name"
  const size_t question = text.find("\nQuestion:", main);
  for (size_t at = text.find("VAR ", main); at != std::string::npos && at < question; at = text.find("VAR ", at + 4)) {
    size_t i = at + 4;
    std::string name;
    while (i < text.size() && std::isupper(static_cast<unsigned char>(text[i]))) name += text[i++];
    if (text.compare(i, 3, " = ") != 0) continue;  // the "VAR x" on the right of a line
    i += 3;
    if (text.compare(i, 4, "VAR ") == 0) {
      std::string other;
      for (i += 4; i < text.size() && std::isupper(static_cast<unsigned char>(text[i])); ++i) other += text[i];
      assigned[name] = "VAR " + other;
    } else {
      std::string digits;
      while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) digits += text[i++];
      assigned[name] = digits;
    }
  }
  std::set<std::string> holds;
  for (bool grew = true; grew;) {
    grew = false;
    for (const auto& [name, rhs] : assigned) {
      const bool has = rhs == value || (rhs.rfind("VAR ", 0) == 0 && holds.count(rhs.substr(4)));
      if (has && holds.insert(name).second) grew = true;
    }
  }
  return std::vector<std::string>(holds.begin(), holds.end());
}

// The `top` most frequent words of `words` (skipping `ignore`); fails the
// test when the top is not strictly above the rest.
std::vector<std::string> most_frequent(const std::vector<std::string>& words, size_t top, const std::string& ignore) {
  std::map<std::string, int> count;
  for (const std::string& w : words)
    if (w != ignore) ++count[w];
  std::vector<std::pair<int, std::string>> by;
  for (const auto& [w, c] : count) by.push_back({-c, w});
  std::sort(by.begin(), by.end());
  EXPECT_GT(by.size(), top);
  if (by.size() > top) EXPECT_LT(by[top - 1].first, by[top].first) << "rank " << top << " is tied";
  std::vector<std::string> out;
  for (size_t i = 0; i < top && i < by.size(); ++i) out.push_back(by[i].second);
  return out;
}

std::vector<std::string> solve_cwe(const std::string& text) {
  const size_t main = text.rfind("Below is a numbered list of words.");
  const std::string list = between(text, "\n", main, "\nQuestion:");
  std::vector<std::string> words;
  int expect = 1;
  const std::vector<std::string> parts = absl::StrSplit(list, ' ');
  for (size_t i = 0; i + 1 < parts.size(); i += 2) {
    EXPECT_EQ(parts[i], std::to_string(expect++) + ".");
    words.push_back(parts[i + 1]);
  }
  return most_frequent(words, 10, "");
}

std::vector<std::string> solve_fwe(const std::string& text) {
  const std::string coded = between(text, "Find the three most frequently appeared coded words. ", 0, "\nQuestion:");
  return most_frequent(absl::StrSplit(coded, ' '), 3, "...");
}

// The answers the solver finds in `text`, sorted.
std::vector<std::string> solve(Task task, const std::string& text) {
  std::vector<std::string> a = task == Task::kVt    ? solve_vt(text)
                               : task == Task::kCwe ? solve_cwe(text)
                               : task == Task::kFwe ? solve_fwe(text)
                                                    : solve_niah(text).answers;
  std::sort(a.begin(), a.end());
  return a;
}

// ------------------------------------------------------------------ fixtures

const std::vector<std::string>& words() {
  static const std::vector<std::string> w = [] {
    absl::StatusOr<std::vector<std::string>> l = load_word_list();
    EXPECT_TRUE(l.ok()) << l.status() << " (launch/setup installs wamerican)";
    return l.ok() ? *l : std::vector<std::string>{};
  }();
  return w;
}

Resources resources() { return {words(), essay_words(packaged_essay_text())}; }

const Tokenizer& bytes() {
  static const std::unique_ptr<Tokenizer> t = *make_tokenizer("bytes");
  return *t;
}

// A BPE SentencePiece model of 2000 pieces trained by spm_train (Debian's
// sentencepiece package) on the packaged essay.
const Tokenizer& sentencepiece() {
  static const std::unique_ptr<Tokenizer> t = [] {
    const fs::path dir = fs::path(::testing::TempDir()) / ("ruler_test_spm_" + std::to_string(getpid()));
    fs::create_directories(dir);
    std::ofstream(dir / "essay.txt") << packaged_essay_text();
    const std::string command = "spm_train --input=" + (dir / "essay.txt").string() + " --model_prefix=" +
                                (dir / "essay").string() +
                                " --vocab_size=2000 --model_type=bpe --num_threads=1 --minloglevel=2 > " +
                                (dir / "log").string() + " 2>&1";
    EXPECT_EQ(std::system(command.c_str()), 0) << command << " (spm_train: Debian package sentencepiece)";
    absl::StatusOr<std::unique_ptr<Tokenizer>> tok = make_tokenizer("spm:" + (dir / "essay.model").string());
    EXPECT_TRUE(tok.ok()) << tok.status();
    return std::move(*tok);
  }();
  return *t;
}

const char* prefix_of(Task t) {
  switch (t) {
    case Task::kVt: return "they are: ";
    case Task::kCwe: return "appear most often in the list are:";
    case Task::kFwe: return "the three most frequently appeared words are:";
    default: return " mentioned in the provided text ";  // "... is" / "... are"
  }
}

// Every check of one sample against the solver and the length contract.
void check_sample(const Sample& s, const Tokenizer& tok) {
  SCOPED_TRACE(std::string(task_info(s.task).name) + " length " + std::to_string(s.length) + " index " +
               std::to_string(s.index));
  const int64_t tokens = static_cast<int64_t>(s.ids.size());
  EXPECT_LE(tokens + s.max_new_tokens, s.length);
  EXPECT_GE(10 * (tokens + s.max_new_tokens), 8 * s.length) << tokens << " tokens";
  EXPECT_EQ(s.ids, *tok.encode(s.input));
  EXPECT_EQ(s.max_new_tokens, task_info(s.task).max_new_tokens);
  ASSERT_FALSE(s.answers.empty());
  std::vector<std::string> want = s.answers;
  std::sort(want.begin(), want.end());
  EXPECT_EQ(solve(s.task, s.input), want);
  for (const std::string& a : s.answers) EXPECT_NE(s.input.find(a), std::string::npos) << a;
  EXPECT_NE(s.input.find(prefix_of(s.task), s.input.size() - 120), std::string::npos)
      << "ends with " << s.input.substr(s.input.size() - 80);
  const size_t expected_answers[] = {1, 1, 1, 1, 1, 1, 4, 4, 5, 10, 3};
  EXPECT_EQ(s.answers.size(), expected_answers[static_cast<int>(s.task)]);
  if (s.depth >= 0) {  // niah: the asked needle at the sample's depth
    const size_t start = s.input.find('\n') + 1, end = s.input.rfind("\nWhat ");
    const size_t at = s.input.rfind("One of the special magic", s.input.find(s.answers[0], start));
    const double where = static_cast<double>(at - start) / static_cast<double>(end - start);
    // Needles go between sentences (essay) or lines: the depth is exact to
    // within half the longest one, plus the other needles' shift.
    size_t longest = 0;
    for (const std::string& sent : split_sentences(s.input.substr(start, end - start)))
      longest = std::max(longest, sent.size());
    const double tolerance = (static_cast<double>(longest) / 2 + 4 * 110) / static_cast<double>(end - start) + 0.02;
    EXPECT_NEAR(where, s.depth, tolerance) << "needle at " << at << " of [" << start << ", " << end << ")";
    const int needles[] = {1, 1, 1, 4, -1, -1, 4, 4};
    const NiahFound f = solve_niah(s.input);
    if (needles[static_cast<int>(s.task)] > 0) EXPECT_EQ(f.needles, needles[static_cast<int>(s.task)]);
    if (needles[static_cast<int>(s.task)] < 0) EXPECT_EQ(f.needles, s.haystack + 1);  // a haystack of needles
  }
}

// ------------------------------------------------------------------ tests

TEST(Ruler, EverySampleIsSolvableFromItsPromptAndFillsItsLengthBytes) {
  for (uint64_t seed : {1u, 42u}) {
    Generator gen(bytes(), resources(), seed);
    for (const TaskInfo& t : all_tasks()) {
      absl::StatusOr<int64_t> least = gen.minimum_length(t.task);
      ASSERT_TRUE(least.ok()) << least.status();
      EXPECT_LE(*least, 4096) << t.name;
      int lengths = 0;
      for (int64_t length : {1024, 2048, 4096, 8192}) {
        if (length < *least) continue;
        ++lengths;
        for (int64_t i = 0; i < 6; ++i) {
          absl::StatusOr<Sample> s = gen.sample(t.task, length, i);
          ASSERT_TRUE(s.ok()) << t.name << " " << length << ": " << s.status();
          check_sample(*s, bytes());
        }
      }
      EXPECT_GE(lengths, 2) << t.name;
    }
  }
}

TEST(Ruler, EverySampleIsSolvableFromItsPromptAndFillsItsLengthSentencePiece) {
  Generator gen(sentencepiece(), resources(), 7);
  for (const TaskInfo& t : all_tasks()) {
    for (int64_t length : {4096, 16384}) {
      for (int64_t i = 0; i < 3; ++i) {
        absl::StatusOr<Sample> s = gen.sample(t.task, length, i);
        ASSERT_TRUE(s.ok()) << t.name << " " << length << ": " << s.status();
        check_sample(*s, sentencepiece());
      }
    }
  }
}

TEST(Ruler, ASampleIsAPureFunctionOfItsInputs) {
  Generator in_order(bytes(), resources(), 3);
  std::map<std::string, std::vector<std::string>> seen;  // task -> inputs of samples 0..3
  for (const TaskInfo& t : all_tasks())
    for (int64_t i = 0; i < 4; ++i) seen[t.name].push_back(in_order.sample(t.task, 4096, i)->input);
  for (const TaskInfo& t : all_tasks()) {
    const std::vector<std::string>& inputs = seen[t.name];
    Generator fresh(bytes(), resources(), 3);  // sample 3 first, nothing cached
    EXPECT_EQ(fresh.sample(t.task, 4096, 3)->input, inputs[3]) << t.name;
    EXPECT_NE(inputs[2], inputs[3]) << t.name;
    Generator other_seed(bytes(), resources(), 4);
    EXPECT_NE(other_seed.sample(t.task, 4096, 3)->input, inputs[3]) << t.name;
  }
}

TEST(Ruler, DepthsSpreadEvenlyOverTheSamples) {
  std::vector<double> d;
  for (int64_t i = 0; i < 8; ++i) d.push_back(sample_depth(i));
  EXPECT_EQ(d, (std::vector<double>{0, 0.5, 0.25, 0.75, 0.125, 0.625, 0.375, 0.875}));
  // Any 2^k consecutive samples from 0 put one needle in each 1/2^k of the haystack.
  std::set<int> bins;
  for (int64_t i = 0; i < 16; ++i) bins.insert(static_cast<int>(sample_depth(i) * 16));
  EXPECT_EQ(bins.size(), 16u);
}

TEST(Ruler, StringMatchAllIsTheFractionOfExpectedStringsFound) {
  EXPECT_EQ(string_match_all({"1234567"}, " 1234567.\nmore"), 1.0);
  EXPECT_EQ(string_match_all({"ABC-def"}, "abc-DEF"), 1.0);  // case-insensitive
  EXPECT_EQ(string_match_all({"1", "2", "3", "4"}, "4 and 2"), 0.5);
  EXPECT_EQ(string_match_all({"1234567"}, ""), 0.0);
  EXPECT_EQ(string_match_all({}, "x"), 0.0);
  EXPECT_EQ(postprocess("  a\x01" "b\t "), "a\nb");
}

// An answerer that solves the decoded prompt (right), says nothing, says
// wrong values, or says half of the right ones.
enum class Says { kRight, kNothing, kWrong, kHalf };
Answerer answerer(const Tokenizer& tok, Says says) {
  return [&tok, says](std::span<const int32_t> prompt, int64_t max_new) {
    const std::string text = *tok.decode(std::vector<int32_t>(prompt.begin(), prompt.end()));
    const size_t last = text.rfind("Memorize and track");
    const Task task = last != std::string::npos                      ? Task::kVt
                      : text.rfind("Below is a numbered") != std::string::npos ? Task::kCwe
                      : text.rfind("coded text") != std::string::npos          ? Task::kFwe
                                                                               : Task::kNiahSingle1;
    std::vector<std::string> a = solve(task, text);
    if (says == Says::kNothing) a.clear();
    if (says == Says::kWrong)  // the same shape, every character changed
      for (std::string& s : a)
        for (char& c : s)
          c = std::isdigit(static_cast<unsigned char>(c)) ? static_cast<char>('0' + (c - '0' + 1) % 10)
              : std::islower(static_cast<unsigned char>(c)) ? static_cast<char>('a' + (c - 'a' + 1) % 26)
              : std::isupper(static_cast<unsigned char>(c)) ? static_cast<char>('A' + (c - 'A' + 1) % 26)
                                                            : c;
    if (says == Says::kHalf) a.resize(a.size() / 2);
    Answer out;
    out.ids = *tok.encode(" " + absl::StrJoin(a, " ") + ".");  // vt's 5 names fit 30 bytes
    if (static_cast<int64_t>(out.ids.size()) > max_new) out.ids.resize(static_cast<size_t>(max_new));
    out.mean_entropy = 0.5;
    return out;
  };
}

TEST(Ruler, ScoresOneForTheRightAnswersZeroForNoneOrWrongPartialForHalf) {
  Generator gen(bytes(), resources(), 11);
  Options o{.tasks = {}, .lengths = {4096}, .samples = 4};
  for (const TaskInfo& t : all_tasks()) o.tasks.push_back(t.task);
  std::vector<nlohmann::json> dumped;
  absl::StatusOr<std::vector<Cell>> right = run(gen, bytes(), answerer(bytes(), Says::kRight), o,
                                                [&](const Record& r) { dumped.push_back(nlohmann::json::parse(dump_line(r))); });
  ASSERT_TRUE(right.ok()) << right.status();
  ASSERT_EQ(right->size(), all_tasks().size());
  for (const Cell& c : *right) {
    EXPECT_EQ(c.pass_rate, 1.0) << task_info(c.task).name;
    EXPECT_EQ(c.passed, 4) << task_info(c.task).name;
    EXPECT_DOUBLE_EQ(c.mean_entropy, 0.5);
  }
  ASSERT_EQ(dumped.size(), 4 * all_tasks().size());
  EXPECT_EQ(dumped[5]["task"], "niah_single_2");
  EXPECT_EQ(dumped[5]["index"], 1);
  EXPECT_EQ(dumped[5]["score"], 1.0);
  EXPECT_EQ(dumped[5]["length"], 4096);
  EXPECT_GT(dumped[5]["tokens"].get<int64_t>(), 3000);
  EXPECT_NE(dumped[5]["input"].get<std::string>().find(dumped[5]["answers"][0].get<std::string>()), std::string::npos);
  for (Says bad : {Says::kNothing, Says::kWrong}) {
    absl::StatusOr<std::vector<Cell>> cells = run(gen, bytes(), answerer(bytes(), bad), o);
    ASSERT_TRUE(cells.ok());
    for (const Cell& c : *cells) {
      EXPECT_EQ(c.pass_rate, 0.0) << task_info(c.task).name;
      EXPECT_EQ(c.passed, 0);
    }
  }
  o.tasks = {Task::kNiahMultivalue, Task::kNiahMultiquery};
  absl::StatusOr<std::vector<Cell>> half = run(gen, bytes(), answerer(bytes(), Says::kHalf), o);
  ASSERT_TRUE(half.ok());
  for (const Cell& c : *half) {
    EXPECT_EQ(c.pass_rate, 0.5) << task_info(c.task).name;
    EXPECT_EQ(c.passed, 0);
  }
}

// Without fitting_only a length too short for a named task is an error; with
// it (`rotor eval ruler` without --tasks) that cell is left out and the rest
// run in order.
TEST(Ruler, FittingOnlyLeavesOutTheCellsBelowATasksMinimum) {
  Generator gen(bytes(), resources(), 3);
  const int64_t vt = *gen.minimum_length(Task::kVt);
  ASSERT_LT(*gen.minimum_length(Task::kNiahSingle1), vt - 1) << "niah_single_1 fits where vt does not";
  Options o{.tasks = {Task::kNiahSingle1, Task::kVt}, .lengths = {vt - 1, vt}, .samples = 1};
  const absl::Status strict = check_options(gen, o);
  EXPECT_NE(strict.message().find("too short for RULER task vt"), std::string::npos) << strict;
  EXPECT_FALSE(run(gen, bytes(), answerer(bytes(), Says::kRight), o).ok());

  o.fitting_only = true;
  absl::StatusOr<std::vector<CellKey>> planned = planned_cells(gen, o);
  ASSERT_TRUE(planned.ok()) << planned.status();
  ASSERT_EQ(planned->size(), 3u);
  EXPECT_EQ((*planned)[0].task, Task::kNiahSingle1);
  EXPECT_EQ((*planned)[1].length, vt);
  EXPECT_EQ((*planned)[2].task, Task::kVt);
  EXPECT_EQ((*planned)[2].length, vt);
  absl::StatusOr<std::vector<Cell>> cells = run(gen, bytes(), answerer(bytes(), Says::kRight), o);
  ASSERT_TRUE(cells.ok()) << cells.status();
  ASSERT_EQ(cells->size(), 3u);
  EXPECT_EQ((*cells)[0].length, vt - 1);
  EXPECT_EQ((*cells)[2].task, Task::kVt);
  for (const Cell& c : *cells) EXPECT_EQ(c.pass_rate, 1.0) << task_info(c.task).name << " " << c.length;

  o.lengths = {10};
  const absl::Status none = check_options(gen, o);
  EXPECT_NE(none.message().find("no RULER task fits the lengths 10"), std::string::npos) << none;
}

TEST(Ruler, WritesTheCsv) {
  const std::string path = ::testing::TempDir() + "/ruler_test_" + std::to_string(getpid()) + "/ruler.csv";
  ASSERT_TRUE(write_csv(path, "run,a", 30, {{Task::kVt, 2048, 4, 3, 0.875, 1.25}}).ok());
  std::ifstream in(path);
  std::string header, row;
  std::getline(in, header);
  std::getline(in, row);
  EXPECT_EQ(header, "run,step,task,length,samples,passed,pass_rate,mean_entropy");
  EXPECT_EQ(row, "\"run,a\",30,vt,2048,4,3,0.875,1.25");
}

TEST(Ruler, BadInputSaysWhatIsWrong) {
  absl::StatusOr<std::vector<Task>> t = parse_tasks("niah_single_1,qa_1");
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("unknown RULER task 'qa_1'"), std::string::npos) << t.status();
  EXPECT_NE(t.status().message().find("niah_single_1, niah_single_2"), std::string::npos);
  EXPECT_NE(t.status().message().find("cwe, fwe"), std::string::npos);
  EXPECT_EQ(parse_tasks("vt,cwe,vt")->size(), 2u);

  Generator gen(bytes(), resources(), 1);
  const int64_t least = *gen.minimum_length(Task::kVt);
  absl::StatusOr<Sample> s = gen.sample(Task::kVt, least - 1, 0);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.status().message().find("too short for RULER task vt"), std::string::npos) << s.status();
  EXPECT_NE(s.status().message().find("at least " + std::to_string(least)), std::string::npos) << s.status();
  EXPECT_TRUE(gen.sample(Task::kVt, least, 0).ok()) << "the minimum it names works";

  absl::StatusOr<std::vector<std::string>> missing = load_word_list("/nonexistent/words");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("wamerican"), std::string::npos) << missing.status();

  Generator no_essay(bytes(), {words(), {}}, 1);
  EXPECT_FALSE(no_essay.sample(Task::kNiahSingle2, 4096, 0).ok());
  EXPECT_TRUE(no_essay.sample(Task::kNiahSingle1, 4096, 0).ok());
}

TEST(RulerText, WordListAndSentences) {
  ASSERT_GT(words().size(), 10000u);
  for (const std::string& w : words()) ASSERT_TRUE(std::all_of(w.begin(), w.end(), ::islower)) << w;
  EXPECT_EQ(split_sentences("Call me Ishmael. Some years ago!  \"Never mind?\" he said\nend"),
            (std::vector<std::string>{"Call me Ishmael.", "Some years ago!", "\"Never mind?\"", "he said\nend"}));
  EXPECT_EQ(split_sentences("3.14 is pi. "), (std::vector<std::string>{"3.14 is pi."}));
  EXPECT_EQ(essay_words("  a\tb\n\nc "), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_GT(essay_words(packaged_essay_text()).size(), 20000u);
  Rng rng(5);
  const std::vector<int64_t> k = rng.sample(10, 10);
  EXPECT_EQ(std::set<int64_t>(k.begin(), k.end()).size(), 10u);
}

}  // namespace
}  // namespace rotor::ruler
