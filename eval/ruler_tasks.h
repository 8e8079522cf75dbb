// RULER's synthetic tasks (Hsieh et al., "RULER: What's the Real Context Size
// of Your Long-Context Language Models?", COLM 2024; github.com/NVIDIA/RULER,
// scripts/synthetic.yaml): the 11 that need no dataset, generated with
// RULER's prompt templates so that scores compare with published RULER
// tables. Prompts are for base models: the task template followed by RULER's
// answer prefix, which the model continues.
//
//   task             haystack                needles (key -> value)        answers
//   niah_single_1    noise sentences         1, word -> 7-digit number     the number
//   niah_single_2    essay                   1, word -> number             the number
//   niah_single_3    essay                   1, word -> UUID               the UUID
//   niah_multikey_1  essay                   4 keys (3 distractors)        the asked key's number
//   niah_multikey_2  needles (random keys)   1, word -> number             the number
//   niah_multikey_3  needles (random keys)   1, UUID -> UUID               the UUID
//   niah_multivalue  essay                   1 key with 4 numbers          all 4 numbers
//   niah_multiquery  essay                   4 keys, all 4 asked           all 4 numbers
//   vt               noise sentences         a chain of 4 hops             the 5 variables
//   cwe              numbered word list      10 words x30, others x3       the 10 common words
//   fwe              coded words, Zipf 2.0   -                             the 3 most frequent
//
// Formats (RULER's, verbatim):
//   needle    "One of the special magic {numbers|uuids} for {key} is: {value}."
//   noise     "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
//   niah      "Some special magic numbers are hidden within the following text. Make sure to
//              memorize it. I will quiz you about the numbers afterwards.\n{context}\nWhat are
//              all the special magic numbers for {query} mentioned in the provided text? The
//              special magic numbers for {query} mentioned in the provided text are"
//             (one value asked: "A special magic number is hidden ...", "What is ...", "... is")
//   vt        "VAR {name} = {value}", "VAR {name} = VAR {other} " lines; the question "Find all
//              variables that are assigned the value {value} in the text above." and the answer
//              prefix "... {n} variables are assgined the value {value}, they are: " (RULER's
//              spelling); preceded by one solved example (3-letter names, ~500 tokens)
//   cwe       "1. word 2. word ...", preceded by one solved example; "What are the 10 most
//              common words in the above list?"
//   fwe       6-letter coded words, the most frequent one replaced by "..."; "What are the three
//              most frequently appeared words in the above coded text?"
// cwe uses RULER's smaller repeats (common x6, others x1; the example x3 /
// x1 instead of x10 / x3) below 4096 tokens, and also above when the larger
// ones do not fit (a byte tokenizer spends ~5x RULER's tokens on a word).
// Keys are two words of the word list joined by '-' (RULER: adjective-noun
// pairs of the wonderwords lists); cwe's words come from the same list.
//
// Length: a sample of length L holds as much haystack as fits in L tokens of
// the model's tokenizer with the task's answer budget (niah 128, vt 30, cwe
// 120, fwe 50 tokens, RULER's) after the prompt: prompt tokens + budget <= L,
// and >= 0.8 L; the search stops within 0.2% of L (at least 16 tokens) of
// the budget. The haystack size is searched once per (task, length) on
// sample 0; a sample whose own keys make it longer shrinks until it fits.
// Generating at 128K tokens with a SentencePiece tokenizer takes ~1 s for a
// (task, length) and ~0.3 s a sample (2-core VM), mostly encoding.
//
// Depths: in the niah tasks the first needle of the first asked key sits at
// depth d of the haystack, d = van der Corput(index) = 0, 1/2, 1/4, 3/4,
// 1/8, ...: any run of consecutive samples spreads evenly over [0, 1). The
// other needles go to random depths (RULER's 40-point grid for the essay).
//
// A sample is a pure function of (task, length, index, seed, tokenizer, word
// list, essay text): the same in any order, on any rank. Its random draws
// (keys, values, names, words) depend on (seed, task, index) only, so
// sample i asks for the same keys at every length, in more or less haystack.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "data/tokenizer.h"

namespace rotor::ruler {

enum class Task {
  kNiahSingle1, kNiahSingle2, kNiahSingle3, kNiahMultikey1, kNiahMultikey2, kNiahMultikey3,
  kNiahMultivalue, kNiahMultiquery, kVt, kCwe, kFwe,
};

struct TaskInfo {
  Task task;
  const char* name;        // RULER's name
  int64_t max_new_tokens;  // RULER's tokens_to_generate
  bool needs_words;        // keys or words from the word list
  bool needs_essay;        // an essay haystack
};
// Every task, in RULER's order (the table above).
const std::vector<TaskInfo>& all_tasks();
const TaskInfo& task_info(Task task);
// "niah_single_1,vt" -> the tasks; InvalidArgument naming an unknown one and
// listing the valid names. Duplicates are dropped.
absl::StatusOr<std::vector<Task>> parse_tasks(std::string_view list);

// The depth of sample `index`: the van der Corput sequence in base 2.
double sample_depth(int64_t index);

// One generated prompt.
struct Sample {
  Task task = Task::kNiahSingle1;
  int64_t length = 0;
  int64_t index = 0;
  std::string input;                 // the prompt text, ending with the answer prefix
  std::vector<int32_t> ids;          // its tokens (no bos added)
  std::vector<std::string> answers;  // the expected strings
  int64_t max_new_tokens = 0;
  int64_t haystack = 0;              // haystack units: sentences, words or needles
  double depth = -1;                 // niah: the depth of the first asked needle
};

// What generation reads besides the tokenizer.
struct Resources {
  std::vector<std::string> words;  // load_word_list(): tasks with needs_words
  std::vector<std::string> essay;  // essay_words() of the haystack text: needs_essay
};

class Generator {
 public:
  // `tokenizer` must outlive the generator.
  Generator(const Tokenizer& tokenizer, Resources resources, uint64_t seed);

  // Sample `index` of `task` at `length` tokens. InvalidArgument when the
  // length is too short for the task ("... use lengths of at least N") or a
  // resource it needs is empty; FailedPrecondition when the haystack cannot
  // fill 80% of the length (the word list runs out).
  absl::StatusOr<Sample> sample(Task task, int64_t length, int64_t index);

  // The shortest length that holds the prompts of samples 0-7 with their
  // smallest haystack and the answer budget (what the "too short" error
  // suggests; a later sample with longer keys may need a few tokens more).
  absl::StatusOr<int64_t> minimum_length(Task task);

 private:
  struct Built;
  Built build(Task task, int64_t length, int64_t n, uint64_t seed, double depth) const;
  absl::StatusOr<std::vector<int32_t>> encode(const Built& b) const;
  absl::StatusOr<int64_t> tokens(const Built& b) const;
  absl::StatusOr<int64_t> fitted_size(Task task, int64_t length);
  int64_t vt_example_noise();
  bool cwe_small(int64_t length) const;
  absl::Status choose_cwe_repeats(int64_t length);
  uint64_t sample_seed(Task task, int64_t index) const;

  const Tokenizer& tokenizer_;
  Resources resources_;
  uint64_t seed_;
  std::map<std::pair<Task, int64_t>, int64_t> sizes_;  // haystack size of sample 0
  std::map<Task, int64_t> minimums_;                  // minimum_length, once per task
  int64_t vt_example_noise_ = -1;                       // noise sentences of vt's example
  std::map<int64_t, bool> cwe_small_;                   // length -> cwe's smaller repeats
};

}  // namespace rotor::ruler
