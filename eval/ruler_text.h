// The raw material of the RULER prompts (eval/ruler_tasks.h): a seeded
// random stream, the English word list, and the essay haystack with its
// sentences.
//
//   absl::StatusOr<std::vector<std::string>> words = ruler::load_word_list();
//   std::vector<std::string> essay = ruler::essay_words(ruler::packaged_essay_text());
//   ruler::Rng rng(seed);  const uint64_t i = rng.below(words->size());
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "data/tokenizer.h"
#include "kernels/random.h"

namespace rotor::ruler {

// A stream of 64-bit numbers fixed by its seed (SplitMix64 over a counter):
// the same on every platform and standard library, which the distributions
// of <random> are not. below(n) is uniform in [0, n) (rejection, no modulo
// bias).
class Rng {
 public:
  explicit Rng(uint64_t seed) : seed_(mix64(seed)) {}
  uint64_t next() { return mix64(seed_ ^ mix64(counter_++)); }
  uint64_t below(uint64_t n) {
    const uint64_t reject_under = (0 - n) % n;  // 2^64 mod n
    for (;;) {
      const uint64_t r = next();
      if (r >= reject_under) return r % n;
    }
  }
  int64_t between(int64_t lo, int64_t hi) {  // uniform in [lo, hi]
    return lo + static_cast<int64_t>(below(static_cast<uint64_t>(hi - lo) + 1));
  }
  template <typename T>
  void shuffle(std::vector<T>& v) {  // Fisher-Yates
    for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[below(i)]);
  }
  // k distinct indices of [0, n), in the order drawn (k <= n).
  std::vector<int64_t> sample(int64_t n, int64_t k);

 private:
  uint64_t seed_;
  uint64_t counter_ = 0;
};

// Debian's English word list (package wamerican).
inline constexpr char kWordListPath[] = "/usr/share/dict/words";
// The lowercase alphabetic words ([a-z]+, one per line) of `path`, sorted and
// unique: RULER's keys and common words. NotFound naming the path and the
// Debian package that provides it (wamerican; any of wbritish, wcanadian,
// ... works too) when it cannot be read; InvalidArgument when it holds fewer
// than 1000 such words.
absl::StatusOr<std::vector<std::string>> load_word_list(const std::string& path = kWordListPath);

// The words of `text` as RULER splits its essays: every whitespace run becomes
// one space, then split at spaces (punctuation stays on its word).
std::vector<std::string> essay_words(std::string_view text);

// The sentences of `text` (RULER uses NLTK's punkt): a sentence ends at '.',
// '!' or '?' (and any closing quotes or brackets right after it) followed by
// whitespace; the whitespace between sentences is dropped. No abbreviation
// list: "Mr. Queequeg" splits after "Mr.", which only moves an insertion
// point by a few words.
std::vector<std::string> split_sentences(std::string_view text);

// The packaged essay haystack: the first 15 chapters of Herman Melville's
// Moby-Dick (1851, public domain; ~140 KB, ~25K words; eval/ruler_essay.txt,
// compiled in). Used when a recipe names no held-out or training text.
std::string_view packaged_essay_text();

// The text of the first documents of the indexed dataset at `prefix`,
// decoded by `tokenizer` (its eos/bos and ids outside its vocabulary
// dropped), documents separated by a blank line, until at least `max_chars`
// characters (or the dataset's end). NotFound when it does not open, DataLoss
// on a read error, InvalidArgument when it decodes to no words.
absl::StatusOr<std::string> read_dataset_text(const std::string& prefix, const Tokenizer& tokenizer,
                                              int64_t max_chars);

}  // namespace rotor::ruler
