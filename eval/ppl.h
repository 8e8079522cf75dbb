// Perplexity vs length on long held-out documents, with the loss by position
// bucket (eval/buckets.h).
//
// Windows. A document is the concatenation of its sequences in the indexed
// dataset (rotor prep writes one sequence per document). At length L a window
// is L input tokens and their L next-token targets, so it needs L + 1 tokens
// (the trainer's windows are the same shape, data/packing.h); input positions
// are 0..L-1 and the loss of target t+1 is counted at position t.
//   - Default (stride 0), as YaRN's evaluation: one window per document, its
//     first L + 1 tokens. Documents shorter than L + 1 tokens are skipped and
//     counted (LengthPerplexity::skipped).
//   - Sliding (stride S, 0 < S <= L), Hugging Face's perplexity recipe: over
//     every document of at least L + 1 tokens, windows start at 0, S, 2S, ...
//     and each scores only the targets no earlier window scored (the last S of
//     a full window; all L of the first), so every target of the document is
//     scored exactly once with up to L - 1 tokens of context. The last window
//     may be shorter than L; it is padded with uncounted targets (-1), which a
//     causal model ignores.
// Windows are scored with LlamaModel::evaluate's token losses (the fused,
// vocabulary-chunked cross-entropy: no [T, V] logits) in forward passes of
// rows_per_pass windows of [L] tokens each.
//
// Parallel layout (the model built with a ParallelContext): window i goes to
// dp rank i % dp; every tp rank of a group evaluates the same batch; under cp
// each rank evaluates its zigzag shard (shard_for_context), whose token losses
// are bucketed by the shard's own (global, in-window) positions. Sums of
// losses, tokens and documents are added over parallel.dp_cp, so every rank
// returns the same result. L must then be a multiple of 2 * cp. Every rank
// must call perplexity_at_lengths with the same arguments (it is collective).
//
// Bucket widths (default_bucket_width): the first bucket is `requested` wide
// when given (> 0); otherwise 1024 (0-1K, 1K-2K, 2K-4K, ... as long-context
// papers report), halved while it is more than L / 4, down to at least 1, so
// that a short window (the demo's 64..512 tokens) still gets about three
// buckets (L = 256: 0-64, 64-128, 128-256).
#pragma once

#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "data/indexed_dataset.h"
#include "eval/buckets.h"
#include "model/llama.h"
#include "parallel/context.h"

namespace rotor::eval {

struct PplOptions {
  std::vector<int64_t> lengths;  // each >= 1 (a multiple of 2 * cp under context parallelism)
  int64_t stride = 0;            // 0: one window per document; else the sliding-window stride (<= L)
  int64_t max_documents = 0;     // documents used per length, in dataset order; 0: all long enough
  int64_t bucket_width = 0;      // first bucket width; 0: default_bucket_width(L)
  int64_t rows_per_pass = 0;     // windows per forward pass; 0: max(1, 16384 / L)
};

struct BucketLoss {
  PositionBucket bucket;
  int64_t tokens = 0;     // targets scored at positions in the bucket
  double loss_sum = 0;    // their summed loss (nats)
  double mean_loss() const { return tokens ? loss_sum / static_cast<double>(tokens) : 0.0; }
  double ppl() const { return std::exp(mean_loss()); }
};

struct LengthPerplexity {
  int64_t length = 0;
  int64_t bucket_width = 0;
  int64_t documents = 0;  // documents scored
  int64_t skipped = 0;    // documents shorter than length + 1 tokens
  int64_t windows = 0;    // windows evaluated (= documents without a stride)
  int64_t tokens = 0;     // targets scored
  double loss_sum = 0;    // summed loss (nats)
  std::vector<BucketLoss> buckets;  // position_buckets(length, bucket_width), in order

  double mean_loss() const { return tokens ? loss_sum / static_cast<double>(tokens) : 0.0; }
  double ppl() const { return std::exp(mean_loss()); }
};

// See the header comment. `requested` > 0 is returned as it is.
int64_t default_bucket_width(int64_t length, int64_t requested = 0);

// One window of a document: `ids` are the length + 1 tokens (fewer for the
// last window of a slide), `first_scored` the first input position whose
// target is counted (targets of positions < first_scored are context only).
struct PplWindow {
  int64_t document = 0;
  std::vector<int32_t> ids;
  int64_t first_scored = 0;
};

// The windows of document `tokens` at `length` with `stride` (0: the single
// first window), as described above; empty when the document has fewer than
// length + 1 tokens.
std::vector<PplWindow> document_windows(std::span<const int32_t> tokens, int64_t length,
                                        int64_t stride);

// A [rows, length] batch of windows: inputs ids[0..n-1), targets ids[1..n)
// (-1 before first_scored and in the padding), positions 0..length-1.
Batch window_batch(std::span<const PplWindow> windows, int64_t length);

// Perplexity of `model` at each length of options.lengths on the documents of
// `heldout` (collective over options' parallel layout, see above). Errors name
// the option (a bad length or stride) or the dataset.
absl::StatusOr<std::vector<LengthPerplexity>> perplexity_at_lengths(
    LlamaModel& model, const IndexedDataset& heldout, const PplOptions& options,
    const ParallelContext& parallel);

// `rotor eval ppl`'s evaluation: perplexity at each of `lengths`, one length
// at a time, using `documents` documents per length when > 0, else
// max(1, token_budget / L) (the trainer's eval.tokens budget). Errors are
// InvalidArgument "length L: ..." (collective, like perplexity_at_lengths).
struct PplRun {
  std::vector<int64_t> lengths;
  int64_t stride = 0;        // PplOptions::stride
  int64_t documents = 0;     // per length; 0: token_budget / L
  int64_t token_budget = 0;  // tokens per length when documents is 0
};
absl::StatusOr<std::vector<LengthPerplexity>> perplexity_by_length(
    LlamaModel& model, const IndexedDataset& heldout, const PplRun& run, const ParallelContext& parallel);

// ppl.csv: one row with bucket "all" per length, then one per position bucket
// ("0-1K", ...); loss in nats, ppl = exp(loss).
inline constexpr char kPplCsvHeader[] = "run,step,train_length,length,bucket,documents,tokens,loss,ppl";
// The rows of ppl.csv for `results` (without newlines), in that order.
std::vector<std::string> ppl_csv_rows(const std::string& run, int64_t step, int64_t train_length,
                                      std::span<const LengthPerplexity> results);

// The first `documents` documents of `heldout` that hold at least length + 1
// tokens, one window each (their first length + 1 tokens), in dataset order;
// fewer (or none) when fewer documents are that long.
absl::StatusOr<std::vector<PplWindow>> leading_windows(const IndexedDataset& heldout, int64_t length,
                                                       int64_t documents);

}  // namespace rotor::eval
