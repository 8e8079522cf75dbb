// eval/ppl: windows (one per document, or sliding with every target scored
// once), the bucket-width rule, and perplexity on a tiny model against an
// independent forward pass per window; buckets add up to the totals.
#include "eval/ppl.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <numeric>

#include "data/indexed_dataset.h"
#include "kernels/random.h"
#include "model/llama.h"
#include "parallel/communicator.h"

namespace rotor::eval {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kVocab = 40;

LlamaConfig tiny_config() {
  LlamaConfig c;
  c.vocab_size = kVocab;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.initializer_range = 0.3;  // far from uniform predictions, so losses differ by position
  return c;
}

LlamaModel tiny_model() {
  LlamaOptions o;
  o.rope.theta = 100.0;
  absl::StatusOr<LlamaModel> m = LlamaModel::create(tiny_config(), o);
  EXPECT_TRUE(m.ok()) << m.status();
  m->init_weights(11);
  return *std::move(m);
}

std::vector<int32_t> doc_tokens(int64_t doc, int64_t n) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) t[static_cast<size_t>(i)] = static_cast<int32_t>(mix64(doc * 1000 + i) % kVocab);
  return t;
}

// A held-out dataset of documents with the given lengths (document d of
// length n holds doc_tokens(d, n); documents of 2+ sequences split at n / 2).
std::string write_heldout(const std::vector<int64_t>& lengths) {
  const std::string dir = ::testing::TempDir() + "/ppl_test_" + std::to_string(getpid());
  fs::create_directories(dir);
  const std::string prefix = dir + "/heldout";
  absl::StatusOr<IndexedDatasetWriter> w = IndexedDatasetWriter::create(prefix, TokenDType::kUint16);
  EXPECT_TRUE(w.ok()) << w.status();
  for (size_t d = 0; d < lengths.size(); ++d) {
    const std::vector<int32_t> t = doc_tokens(static_cast<int64_t>(d), lengths[d]);
    std::vector<int64_t> wide(t.begin(), t.end());
    const size_t half = wide.size() / 2;
    EXPECT_TRUE(w->add_sequence(std::span<const int64_t>(wide.data(), half)).ok());
    EXPECT_TRUE(w->add_sequence(std::span<const int64_t>(wide.data() + half, wide.size() - half)).ok());
    w->end_document();
  }
  EXPECT_TRUE(w->finalize().ok());
  return prefix;
}

TEST(BucketWidth, DefaultRule) {
  EXPECT_EQ(default_bucket_width(65536), 1024);
  EXPECT_EQ(default_bucket_width(4096), 1024);
  EXPECT_EQ(default_bucket_width(2048), 512);
  EXPECT_EQ(default_bucket_width(256), 64);
  EXPECT_EQ(default_bucket_width(32), 8);
  EXPECT_EQ(default_bucket_width(2), 1);
  EXPECT_EQ(default_bucket_width(2, 100), 100);
}

TEST(DocumentWindows, FirstWindowOrSkipped) {
  const std::vector<int32_t> t = doc_tokens(0, 10);
  const std::vector<PplWindow> w = document_windows(t, 4, 0);
  ASSERT_EQ(w.size(), 1u);
  EXPECT_EQ(w[0].ids, std::vector<int32_t>(t.begin(), t.begin() + 5));
  EXPECT_EQ(w[0].first_scored, 0);
  EXPECT_TRUE(document_windows(std::span<const int32_t>(t.data(), 4), 4, 0).empty());
  EXPECT_EQ(document_windows(std::span<const int32_t>(t.data(), 5), 4, 0).size(), 1u);
}

// Sliding windows: every target 1..n-1 scored exactly once, with at most L
// inputs (L-1 tokens of context), and a full window after the first scores
// only its last `stride` targets.
TEST(DocumentWindows, SlidingScoresEveryTargetOnce) {
  for (int64_t n : {9, 20, 23}) {
    for (int64_t stride : {1, 3, 8}) {
      const int64_t L = 8;
      const std::vector<int32_t> t = doc_tokens(1, n);
      std::map<int64_t, int> scored;  // target index in the document -> times
      int64_t begin = 0;
      const std::vector<PplWindow> ws = document_windows(t, L, stride);
      for (size_t k = 0; k < ws.size(); ++k, begin += stride) {
        const PplWindow& w = ws[k];
        const int64_t inputs = static_cast<int64_t>(w.ids.size()) - 1;
        ASSERT_LE(inputs, L);
        ASSERT_EQ(w.ids, std::vector<int32_t>(t.begin() + begin, t.begin() + begin + inputs + 1));
        if (k > 0 && inputs == L) EXPECT_EQ(L - w.first_scored, stride);
        for (int64_t p = w.first_scored; p < inputs; ++p) ++scored[begin + p + 1];
      }
      ASSERT_EQ(static_cast<int64_t>(scored.size()), n - 1) << "n " << n << " stride " << stride;
      for (const auto& [target, times] : scored) {
        EXPECT_EQ(times, 1) << "target " << target;
        EXPECT_TRUE(target >= 1 && target < n);
      }
    }
  }
}

TEST(WindowBatch, TargetsAndPadding) {
  PplWindow a{.document = 0, .ids = {1, 2, 3, 4, 5}, .first_scored = 0};
  PplWindow b{.document = 1, .ids = {6, 7, 8}, .first_scored = 1};
  const std::vector<PplWindow> ws = {a, b};
  const Batch batch = window_batch(ws, 4);
  EXPECT_EQ(batch.input_ids.to_vector(), (std::vector<double>{1, 2, 3, 4, 6, 7, 0, 0}));
  EXPECT_EQ(batch.targets.to_vector(), (std::vector<double>{2, 3, 4, 5, -1, 8, -1, -1}));
  EXPECT_EQ(batch.positions.to_vector(), (std::vector<double>{0, 1, 2, 3, 0, 1, 2, 3}));
}

// Sum of token losses of one window by its own forward pass (batch of one,
// targets shifted by hand), the reference the evaluation must reproduce.
LossSum reference_window(LlamaModel& m, const std::vector<int32_t>& t, int64_t first, int64_t inputs,
                         int64_t first_scored) {
  Batch b;
  b.input_ids = Tensor::empty({1, inputs}, DType::kI32);
  b.targets = Tensor::empty({1, inputs}, DType::kI32);
  for (int64_t i = 0; i < inputs; ++i) {
    b.input_ids.data<int32_t>()[i] = t[static_cast<size_t>(first + i)];
    b.targets.data<int32_t>()[i] = i >= first_scored ? t[static_cast<size_t>(first + i + 1)] : -1;
  }
  return m.forward(b);
}

void expect_buckets_add_up(const LengthPerplexity& r) {
  int64_t tokens = 0;
  double loss = 0;
  for (const BucketLoss& b : r.buckets) {
    tokens += b.tokens;
    loss += b.loss_sum;
  }
  EXPECT_EQ(tokens, r.tokens);
  // Same terms added in another order: f64 rounding only.
  EXPECT_NEAR(loss, r.loss_sum, 1e-9 * std::abs(r.loss_sum));
}

TEST(Perplexity, MatchesForwardPerWindowAndBucketsAddUp) {
  const std::vector<int64_t> lengths = {40, 10, 33, 70, 32};
  const std::string prefix = write_heldout(lengths);
  absl::StatusOr<IndexedDataset> ds = IndexedDataset::open(prefix);
  ASSERT_TRUE(ds.ok()) << ds.status();
  LlamaModel model = tiny_model();
  std::unique_ptr<Communicator> local = make_local_communicator("dp_cp");
  ParallelContext par;
  par.dp_cp = local.get();  // one rank: the sum goes through the Communicator and changes nothing

  PplOptions o{.lengths = {32, 16}, .rows_per_pass = 2};
  absl::StatusOr<std::vector<LengthPerplexity>> res = perplexity_at_lengths(model, *ds, o, par);
  ASSERT_TRUE(res.ok()) << res.status();
  ASSERT_EQ(res->size(), 2u);
  for (const LengthPerplexity& r : *res) {
    // Documents of at least L + 1 tokens.
    int64_t used = 0;
    LossSum want;
    for (size_t d = 0; d < lengths.size(); ++d) {
      if (lengths[d] < r.length + 1) continue;
      ++used;
      const LossSum l = reference_window(model, doc_tokens(static_cast<int64_t>(d), lengths[d]), 0, r.length, 0);
      want.sum += l.sum;
      want.count += l.count;
    }
    ASSERT_TRUE(std::isfinite(want.sum) && want.sum > 0);
    EXPECT_EQ(r.documents, used);
    EXPECT_EQ(r.skipped, static_cast<int64_t>(lengths.size()) - used);
    EXPECT_EQ(r.tokens, want.count);
    // Rows batched 2 at a time vs one: f32 BLAS blocking may differ, ~1e-7 relative per token.
    EXPECT_NEAR(r.loss_sum, want.sum, 1e-5 * want.sum);
    EXPECT_NEAR(r.ppl(), std::exp(want.mean()), 1e-5 * std::exp(want.mean()));
    EXPECT_EQ(r.buckets.size(), position_buckets(r.length, default_bucket_width(r.length)).size());
    expect_buckets_add_up(r);
    // Every bucket of a full window is scored; the buckets differ (a real split by position).
    for (const BucketLoss& b : r.buckets) EXPECT_GT(b.tokens, 0) << b.bucket.label;
  }
  // --documents caps the documents used.
  o.max_documents = 1;
  res = perplexity_at_lengths(model, *ds, o, par);
  ASSERT_TRUE(res.ok());
  EXPECT_EQ((*res)[0].documents, 1);
  EXPECT_EQ((*res)[0].tokens, 32);
}

TEST(Perplexity, SlidingWindowScoresEveryTokenOnce) {
  const std::vector<int64_t> lengths = {40, 10, 33};
  const std::string prefix = write_heldout(lengths);
  absl::StatusOr<IndexedDataset> ds = IndexedDataset::open(prefix);
  ASSERT_TRUE(ds.ok()) << ds.status();
  LlamaModel model = tiny_model();
  const int64_t L = 16, stride = 5;
  absl::StatusOr<std::vector<LengthPerplexity>> res =
      perplexity_at_lengths(model, *ds, {.lengths = {L}, .stride = stride}, {});
  ASSERT_TRUE(res.ok()) << res.status();
  const LengthPerplexity& r = res->front();
  EXPECT_EQ(r.documents, 2);
  EXPECT_EQ(r.tokens, (40 - 1) + (33 - 1));
  LossSum want;
  for (int64_t d : {0, 2}) {
    const std::vector<int32_t> t = doc_tokens(d, lengths[static_cast<size_t>(d)]);
    int64_t begin = 0;
    for (const PplWindow& w : document_windows(t, L, stride)) {
      const LossSum l = reference_window(model, t, begin, static_cast<int64_t>(w.ids.size()) - 1, w.first_scored);
      want.sum += l.sum;
      want.count += l.count;
      begin += stride;
    }
  }
  ASSERT_TRUE(std::isfinite(want.sum) && want.sum > 0);
  EXPECT_EQ(r.tokens, want.count);
  EXPECT_NEAR(r.loss_sum, want.sum, 1e-5 * want.sum);  // batching differs, as above
  expect_buckets_add_up(r);
}

TEST(Perplexity, BadOptionsAreErrors) {
  const std::string prefix = write_heldout({40});
  absl::StatusOr<IndexedDataset> ds = IndexedDataset::open(prefix);
  ASSERT_TRUE(ds.ok());
  LlamaModel model = tiny_model();
  absl::StatusOr<std::vector<LengthPerplexity>> r =
      perplexity_at_lengths(model, *ds, {.lengths = {8}, .stride = 9}, {});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("--stride"), std::string::npos) << r.status();
  r = perplexity_at_lengths(model, *ds, {.lengths = {0}}, {});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("length 0"), std::string::npos) << r.status();
  r = perplexity_at_lengths(model, *ds, {}, {});
  EXPECT_FALSE(r.ok());
}

}  // namespace
}  // namespace rotor::eval
