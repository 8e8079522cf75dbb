// Attention statistics per layer and head, by query position bucket
// (eval/buckets.h), without ever materialising an [L, L] matrix:
//
//   entropy   H_i = -sum_j p_ij ln p_ij of query row i, from the attention
//             kernel itself (ForwardStats::attention_entropy)
//   distance  D_i = sum_j p_ij (pos_i - pos_j), the mean distance (tokens) a
//             query looks back, rebuilt one row at a time from the q/k the
//             kernel saw (LlamaModel::activations: post-RoPE, logit scalar in q)
//   js_divergence  JS_i = 1/2 KL(p_a || m) + 1/2 KL(p_b || m), m = (p_a + p_b)/2,
//             natural log (so 0 <= JS_i <= ln 2), between two models' rows of
//             the same query on the same input, also row by row
// Each is averaged over the query rows (all batch rows) in a bucket; bucket
// "all" averages every row. A row is p_ij = softmax_j(scale * q_i . k_j) over
// the keys with pos_j <= pos_i (causal, global positions; no document
// masking), scale = 1 / sqrt(head_dim), query head h reading kv head
// h / (Hq / Hkv) (GQA), in double from the f32 activations.
//
// Cost: the row-by-row passes are B * Hq * T^2 * head_dim multiply-adds per
// layer (twice that for js_divergence), on the CPU, rows in parallel over
// OpenMP threads; memory: a row [T] per thread, one value per row
// [B * Hq * T] and the layer's q/k in double.
// Parallel layouts: the functions taking a model run in its layout
// (options.parallel; every rank of the model's group calls them with the
// same whole batch). Each rank evaluates its context shard; under cp the
// keys of every layer are all-gathered (k [B, T, Hkv / tp, hd] in double per
// rank, for one layer at a time), so a rank's rows see the whole sequence;
// under tp a rank takes its query heads (global heads tp_rank * Hq / tp ...).
// The tables are then summed over tp and cp, so every rank returns the
// whole result. Row cost per rank: B * Hq * T^2 * head_dim / (tp * cp).
// dp replicas compute the same tables.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "eval/buckets.h"
#include "kernels/tensor.h"
#include "model/llama.h"
#include "parallel/communicator.h"

namespace rotor::eval {

// Sums and counts of a per-row quantity per (layer, head, bucket).
class HeadBucketTable {
 public:
  HeadBucketTable() = default;
  HeadBucketTable(int64_t layers, int64_t heads, std::vector<PositionBucket> buckets);

  int64_t layers() const { return layers_; }
  int64_t heads() const { return heads_; }
  const std::vector<PositionBucket>& buckets() const { return buckets_; }

  // Adds a row's value to bucket `bucket` (an index into buckets()).
  void add(int64_t layer, int64_t head, int64_t bucket, double value);
  // Mean over the rows of (layer, head, bucket); bucket -1: every bucket;
  // head -1: the mean over heads of each head's mean. 0 when no rows.
  double mean(int64_t layer, int64_t head, int64_t bucket = -1) const;
  // Rows of (layer, head, bucket), bucket -1: all.
  int64_t rows(int64_t layer, int64_t head, int64_t bucket = -1) const;
  // Sums and counts summed over the ranks of `comm` (collective).
  void sum_over(Communicator& comm);

 private:
  size_t at(int64_t layer, int64_t head, int64_t bucket) const;
  int64_t layers_ = 0, heads_ = 0;
  std::vector<PositionBucket> buckets_;
  std::vector<double> sum_;
  std::vector<int64_t> count_;
};

struct AttentionStats {
  int64_t bucket_width = 0;
  HeadBucketTable entropy;   // nats
  HeadBucketTable distance;  // tokens
};

// One attention row: p_j for key rows j = 0..Tk-1 of batch row b, query head
// h, query row i (0 for keys not visible). q [B, Tq, Hq, hd], k [B, Tk, Hkv, hd]
// (f32 or f64); q_pos [B, Tq], k_pos [B, Tk] i32, or undefined: 0, 1, 2, ...
std::vector<double> attention_row(const Tensor& q, const Tensor& k, const Tensor& q_pos,
                                  const Tensor& k_pos, int64_t b, int64_t h, int64_t i);

// Explicit attention rows for small inputs (tests): [B, Hq, Tq, Tk] f64, row
// (b, h, i) = attention_row(q, k, q_pos, k_pos, b, h, i).
Tensor attention_matrix(const Tensor& q, const Tensor& k, const Tensor& q_pos = Tensor(),
                        const Tensor& k_pos = Tensor());

// Adds each row's attention distance of one layer's q/k to `out` (row (b, h,
// i) into bucket_index(q_pos[b, i], width) of head h).
void add_attention_distance(const Tensor& q, const Tensor& k, const Tensor& positions, int64_t layer,
                            int64_t width, HeadBucketTable& out);

// Adds each row's JS divergence between (q_a, k_a) and (q_b, k_b) (same shapes
// and positions) of one layer to `out`.
void add_js_divergence(const Tensor& q_a, const Tensor& k_a, const Tensor& q_b, const Tensor& k_b,
                       const Tensor& positions, int64_t layer, int64_t width, HeadBucketTable& out);

// Entropy (from the kernel) and distance (rows from q/k) of `model` on
// `batch` (targets may be undefined). The model must keep activations
// (options.recompute false), in any layout (T a multiple of 2 * cp). Buckets:
// position_buckets(T, width).
absl::StatusOr<AttentionStats> attention_stats(LlamaModel& model, const Batch& batch, int64_t width);

// JS divergence per (layer, head, bucket) between `a` and `b` on `batch`: the
// models must have the same layers, heads and head_dim (RoPE, logit scalars
// and weights may differ), keep activations and share one parallel layout.
absl::StatusOr<HeadBucketTable> attention_js_divergence(LlamaModel& a, LlamaModel& b,
                                                        const Batch& batch, int64_t width);

// attention.csv (`rotor eval attention`): metric entropy (nats) | distance
// (tokens) | js_divergence (nats); head -1 is the mean over heads; bucket
// "all" or a bucket's label; reference: the reference checkpoint on
// js_divergence rows, empty otherwise.
inline constexpr char kAttentionCsvHeader[] = "run,step,length,layer,head,bucket,metric,value,reference";
// The rows of attention.csv (without newlines) of `stats` and, when not null,
// `js` against `reference`: entropy, distance, then js_divergence rows; in
// each, layer by layer, head -1 then each head, bucket "all" then each bucket
// that has rows.
std::vector<std::string> attention_csv_rows(const std::string& run, int64_t step, int64_t length,
                                            const AttentionStats& stats, const HeadBucketTable* js,
                                            const std::string& reference);

}  // namespace rotor::eval
