// Passkey and needle-in-a-haystack retrieval grids (length x depth), scored
// by greedy decoding with a KV cache (model/decode.h).
//
// Passkey (Mohtashami & Jaggi 2023, as used by Zhong et al. 2024):
//   kPasskeyInstruction
//   filler ... "The pass key is NNNNN. Remember it. NNNNN is the pass key." ... filler
//   kPasskeyQuestion                      ("What is the pass key? The pass key is")
// The filler repeats kPasskeyFiller. The model answers greedily; a trial
// passes when the answer, leading whitespace removed, starts with the 5 key
// digits.
//
// Needle (Kamradt's haystack): kNeedle inserted into REAL held-out text (token
// ids from the run's data), then kNeedleQuestion. The score of a trial is the
// fraction of kNeedleAnswerWords (the content words of the needle's answer,
// stop words excluded) that appear among the answer's words (lower-cased,
// split at non-alphanumerics); a trial passes when the score is at least
// kNeedlePassScore (0.5: more than half the facts retrieved).
//
// Length: the prompt's total length in tokens (instruction + haystack with
// the inserted sentence + question). Pieces are tokenized separately and
// concatenated, so a SentencePiece prompt can differ from tokenizing the
// whole text at the seams (a word boundary at each seam, which the pieces
// end or start with anyway). Depth d in [0, 1]: the sentence starts after a
// fraction d of the haystack (0: right after the instruction, 1: right
// before the question); passkey snaps it to the start of a filler repetition,
// needle puts it at that token of the real text.
//
// Trials are deterministic from the seed: the passkey trial's key and the
// needle trial's haystack offset in the held-out tokens are drawn from
// (seed, length, depth index, trial).
//
// Each cell records trials, passed, pass_rate = passed / trials, the mean
// needle score (1/0 for passkey) and the mean attention entropy while
// answering: the mean over layers, heads and generated tokens of the entropy
// of the query row that produced each answer token.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "data/tokenizer.h"
#include "model/llama.h"

namespace rotor {

inline constexpr char kPasskeyInstruction[] =
    "There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. "
    "I will quiz you about the important information there. ";
inline constexpr char kPasskeyFiller[] =
    "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. ";
inline constexpr char kPasskeyQuestion[] = " What is the pass key? The pass key is";

inline constexpr char kNeedle[] =
    " The best thing to do in San Francisco is eat a sandwich and sit in Dolores Park on a sunny "
    "day. ";
inline constexpr char kNeedleInstruction[] =
    "Read the document and answer the question after it. Document: ";
inline constexpr char kNeedleQuestion[] =
    " Question: What is the best thing to do in San Francisco? Answer: The best thing to do in "
    "San Francisco is";
inline constexpr char kNeedleAnswerWords[] = "eat sandwich sit dolores park sunny day";
inline constexpr double kNeedlePassScore = 0.5;

enum class RetrievalKind { kPasskey, kNeedle };
const char* retrieval_kind_name(RetrievalKind kind);  // "passkey", "needle"

// One prompt and what a correct answer contains.
struct RetrievalPrompt {
  std::vector<int32_t> ids;  // exactly `length` tokens
  std::string expected;      // the key digits, or kNeedleAnswerWords
  int64_t insert_at = 0;     // token index where the inserted sentence starts
};

// The passkey prompt of `length` tokens with `key` (5 digits) at `depth`.
// InvalidArgument when the length leaves no room for one token of filler.
absl::StatusOr<RetrievalPrompt> passkey_prompt(const Tokenizer& tokenizer, int64_t length,
                                               double depth, int64_t key);
// The needle prompt of `length` tokens: haystack tokens from `haystack`
// starting at `offset` (it must hold enough of them).
absl::StatusOr<RetrievalPrompt> needle_prompt(const Tokenizer& tokenizer,
                                              std::span<const int32_t> haystack, int64_t offset,
                                              int64_t length, double depth);

// 1 when `answer` (leading whitespace removed) starts with `digits`, else 0.
double score_passkey(const std::string& digits, const std::string& answer);
// Fraction of the words of `expected_words` found among the words of `answer`.
double score_needle(const std::string& expected_words, const std::string& answer);

// What answering a prompt produced.
struct Answer {
  std::vector<int32_t> ids;
  double mean_entropy = 0;  // over layers, heads and answer tokens
};
// prompt ids, max new tokens -> the answer.
using Answerer = std::function<Answer(std::span<const int32_t> prompt, int64_t max_new_tokens)>;
// The text of answer `ids`: ids outside the tokenizer's vocabulary (a padded
// model vocabulary), bos and eos are dropped; an undecodable answer reads as
// empty (a miss).
std::string answer_text(const Tokenizer& t, const std::vector<int32_t>& ids);

// Greedy answers from `model`, stopping after `stop_id` when it is >= 0 (ties
// go to the lowest id). On one rank: KV-cache decoding (model/decode.h). In a
// tensor- or context-parallel layout: recompute_answerer.
absl::StatusOr<Answerer> greedy_answerer(LlamaModel& model, int32_t stop_id);
// Greedy answers by full recomputation in the model's parallel layout
// (model.options().parallel): each answer token is one forward pass of the
// prompt and the answer so far, as in training (ring attention over cp, heads
// and vocabulary split over tp), so a length that trains also answers. The
// sequence is padded to a multiple of 2 * cp (times tp under sequence
// parallelism) with tokens of their own segment at position 0, which the real
// tokens cannot see and which leave the RoPE tables of a dynamic method
// unchanged (they follow the largest position). The next token's
// distribution comes from the row of the last real position, gathered over
// the tp vocabulary shards and summed over cp (the owning rank contributes),
// so every rank picks the same token. Cost: answer tokens x a forward pass of
// the prompt (passkey answers are ~8 tokens), against one prefill plus cheap
// steps for the KV cache on one rank. Collective: every rank of the model's
// tp x cp group calls it with the same prompt; dp replicas repeat the work.
// Equals KV-cache decoding on one rank (tests/eval/retrieval_test.cc).
absl::StatusOr<Answerer> recompute_answerer(LlamaModel& model, int32_t stop_id);

struct RetrievalOptions {
  std::vector<int64_t> lengths;                         // tokens, each > 0
  std::vector<double> depths = {0, 0.25, 0.5, 0.75, 1};  // each in [0, 1]
  int64_t trials = 5;
  uint64_t seed = 1234;
};

struct RetrievalCell {
  int64_t length = 0;
  double depth = 0;
  int64_t trials = 0;
  int64_t passed = 0;
  double pass_rate = 0;
  double mean_score = 0;
  double mean_entropy = 0;
};

// Runs the grid, lengths outer, depths inner. The needle grid needs
// `haystack` to hold at least max(lengths) tokens; ignored for passkey.
// `progress` (optional) is called after each cell.
absl::StatusOr<std::vector<RetrievalCell>> run_retrieval_grid(
    RetrievalKind kind, const Tokenizer& tokenizer, const Answerer& answer,
    const RetrievalOptions& options, std::span<const int32_t> haystack = {},
    const std::function<void(const RetrievalCell&)>& progress = nullptr);

// The needle haystack for prompts of `lengths`: the first 4 * max(lengths)
// tokens of the indexed dataset at `prefix` (fewer when it has fewer),
// sequences in dataset order. NotFound when it does not open, DataLoss on a
// read error, InvalidArgument when it holds fewer than max(lengths) tokens.
absl::StatusOr<std::vector<int32_t>> read_needle_haystack(const std::string& prefix,
                                                          std::span<const int64_t> lengths);

// The CSV header, exactly "run,step,length,depth,trials,passed,pass_rate,mean_entropy".
extern const char kRetrievalCsvHeader[];
// Writes the header and one row per cell to `path` (parent directories created).
absl::Status write_retrieval_csv(const std::string& path, const std::string& run, int64_t step,
                                 const std::vector<RetrievalCell>& cells);

}  // namespace rotor
