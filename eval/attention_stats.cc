// Attention statistics per layer and head; see attention_stats.h.
#include "eval/attention_stats.h"

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "eval/csv.h"
#include "kernels/check.h"
#include "kernels/status.h"

namespace rotor::eval {
namespace {

// q/k of one layer in double, with their shapes and positions.
struct QK {
  std::vector<double> q, k;
  std::vector<int32_t> q_pos, k_pos;  // [B * Tq], [B * Tk]
  int64_t batch = 0, tq = 0, tk = 0, hq = 0, hkv = 0, hd = 0;
  double scale = 0;
};

std::vector<int32_t> positions_of(const Tensor& pos, int64_t batch, int64_t t) {
  std::vector<int32_t> out(static_cast<size_t>(batch * t));
  if (pos.defined()) {
    ROTOR_CHECK(pos.numel() == batch * t) << "positions " << pos.str() << " for " << batch << "x" << t;
    const int32_t* p = pos.data<int32_t>();
    std::copy(p, p + batch * t, out.begin());
  } else {
    for (int64_t i = 0; i < batch * t; ++i) out[static_cast<size_t>(i)] = static_cast<int32_t>(i % t);
  }
  return out;
}

QK load_qk(const Tensor& q, const Tensor& k, const Tensor& q_pos, const Tensor& k_pos) {
  ROTOR_CHECK(q.defined() && k.defined() && q.ndim() == 4 && k.ndim() == 4)
      << "q/k must be [B, T, H, hd] (activations need recompute off)";
  QK x;
  x.batch = q.dim(0);
  x.tq = q.dim(1);
  x.hq = q.dim(2);
  x.hd = q.dim(3);
  x.tk = k.dim(1);
  x.hkv = k.dim(2);
  ROTOR_CHECK(k.dim(0) == x.batch && k.dim(3) == x.hd && x.hkv > 0 && x.hq % x.hkv == 0)
      << "q " << q.str() << " and k " << k.str() << " do not match";
  x.q = q.to(Device::cpu()).to_vector();  // activations may live on a device
  x.k = k.to(Device::cpu()).to_vector();
  x.q_pos = positions_of(q_pos, x.batch, x.tq);
  x.k_pos = positions_of(k_pos, x.batch, x.tk);
  x.scale = 1.0 / std::sqrt(static_cast<double>(x.hd));
  return x;
}

// Context parallelism: this rank's q rows against the keys of the whole
// sequence. Each cp rank holds k [B, T/cp, Hkv/tp, hd] of its zigzag shard;
// the all-gather stacks them [cp * B, T/cp, ...] and they are regrouped per
// batch row, in rank order (rows need no key order: masks use positions).
void gather_keys(QK& x, Communicator& cp) {
  if (cp.size() == 1) return;
  const int64_t n = cp.size(), per_row = x.tk * x.hkv * x.hd;
  Tensor k = Tensor::from_vector(x.k, {x.batch, per_row}, DType::kF64);
  Tensor all_k = Tensor::empty({n * x.batch, per_row}, DType::kF64);
  cp.all_gather(k, all_k);
  Tensor pos = Tensor::empty({x.batch, x.tk}, DType::kI32);
  std::copy(x.k_pos.begin(), x.k_pos.end(), pos.data<int32_t>());
  Tensor all_pos = Tensor::empty({n * x.batch, x.tk}, DType::kI32);
  cp.all_gather(pos, all_pos);
  std::vector<double> keys(static_cast<size_t>(n * x.batch * per_row));
  std::vector<int32_t> key_pos(static_cast<size_t>(n * x.batch * x.tk));
  for (int64_t b = 0; b < x.batch; ++b)
    for (int64_t r = 0; r < n; ++r) {
      const double* src = all_k.data<double>() + (r * x.batch + b) * per_row;
      std::copy(src, src + per_row, keys.begin() + (b * n + r) * per_row);
      const int32_t* p = all_pos.data<int32_t>() + (r * x.batch + b) * x.tk;
      std::copy(p, p + x.tk, key_pos.begin() + (b * n + r) * x.tk);
    }
  x.k = std::move(keys);
  x.k_pos = std::move(key_pos);
  x.tk *= n;
}

// Row (b, h, i) into p [Tk] (0 where not visible); returns false when no key is visible.
bool row(const QK& x, int64_t b, int64_t h, int64_t i, std::vector<double>& p) {
  p.assign(static_cast<size_t>(x.tk), 0.0);
  const int64_t kh = h / (x.hq / x.hkv);
  const double* qi = x.q.data() + ((b * x.tq + i) * x.hq + h) * x.hd;
  const int32_t pi = x.q_pos[static_cast<size_t>(b * x.tq + i)];
  double mx = -std::numeric_limits<double>::infinity();
  for (int64_t j = 0; j < x.tk; ++j) {
    if (x.k_pos[static_cast<size_t>(b * x.tk + j)] > pi) continue;
    const double* kj = x.k.data() + ((b * x.tk + j) * x.hkv + kh) * x.hd;
    double dot = 0;
    for (int64_t d = 0; d < x.hd; ++d) dot += qi[d] * kj[d];
    p[static_cast<size_t>(j)] = x.scale * dot;
    mx = std::max(mx, p[static_cast<size_t>(j)]);
  }
  if (mx == -std::numeric_limits<double>::infinity()) return false;
  double sum = 0;
  for (int64_t j = 0; j < x.tk; ++j) {
    double& v = p[static_cast<size_t>(j)];
    v = x.k_pos[static_cast<size_t>(b * x.tk + j)] > pi ? 0.0 : std::exp(v - mx);
    sum += v;
  }
  for (double& v : p) v /= sum;
  return true;
}

int64_t bucket_of(int64_t position, int64_t width, const HeadBucketTable& t) {
  return std::min<int64_t>(bucket_index(position, width),
                           static_cast<int64_t>(t.buckets().size()) - 1);
}

// A model the statistics can run on, and a batch its layout can split.
absl::Status check_layout(const LlamaModel& m, const Batch& batch) {
  if (m.options().recompute != Recompute::kNone) {
    return absl::FailedPreconditionError("attention statistics need a model built with recompute off");
  }
  const ParallelContext& par = m.options().parallel;
  const int64_t rows = batch.input_ids.dim(0), t = batch.input_ids.dim(1);
  if (par.cp_size() > 1 && t % (2 * par.cp_size()) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("length ", t, " must be a multiple of 2 * cp (",
                                                   2 * par.cp_size(), ") under context parallelism"));
  }
  if (par.sequence_parallel && (rows * t / par.cp_size()) % par.tp_size() != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sequence parallelism: ", rows, " x ", t / par.cp_size(),
        " tokens per context shard do not split over tp ", par.tp_size()));
  }
  return absl::OkStatus();
}

// Sums the tables of every rank of the model's tp x cp group (each rank
// filled its heads and its query rows); dp replicas computed the same.
void sum_over_model_group(const ParallelContext& par, std::initializer_list<HeadBucketTable*> tables) {
  for (HeadBucketTable* t : tables) {
    if (par.tp_size() > 1) t->sum_over(*par.tp);
    if (par.cp_size() > 1) t->sum_over(*par.cp);
  }
}

Tensor positions_or_iota(const Batch& batch) {
  if (batch.positions.defined()) return batch.positions;
  const int64_t bsz = batch.input_ids.dim(0), t = batch.input_ids.dim(1);
  Tensor p = Tensor::empty({bsz, t}, DType::kI32);
  for (int64_t i = 0; i < bsz * t; ++i) p.data<int32_t>()[i] = static_cast<int32_t>(i % t);
  return p;
}

// evaluate() needs targets; attention statistics do not use them.
Batch with_targets(const Batch& batch) {
  Batch b = batch;
  if (!b.targets.defined()) {
    b.targets = Tensor::empty(batch.input_ids.shape(), DType::kI32);
    b.targets.fill(-1);
  }
  return b;
}

}  // namespace

HeadBucketTable::HeadBucketTable(int64_t layers, int64_t heads, std::vector<PositionBucket> buckets)
    : layers_(layers), heads_(heads), buckets_(std::move(buckets)) {
  const size_t n = static_cast<size_t>(layers_ * heads_) * buckets_.size();
  sum_.assign(n, 0.0);
  count_.assign(n, 0);
}

size_t HeadBucketTable::at(int64_t layer, int64_t head, int64_t bucket) const {
  ROTOR_CHECK(layer >= 0 && layer < layers_ && head >= 0 && head < heads_ && bucket >= 0 &&
              bucket < static_cast<int64_t>(buckets_.size()))
      << "layer " << layer << " head " << head << " bucket " << bucket;
  return static_cast<size_t>((layer * heads_ + head) * static_cast<int64_t>(buckets_.size()) + bucket);
}

void HeadBucketTable::add(int64_t layer, int64_t head, int64_t bucket, double value) {
  const size_t i = at(layer, head, bucket);
  sum_[i] += value;
  count_[i] += 1;
}

void HeadBucketTable::sum_over(Communicator& comm) {
  std::vector<double> flat = sum_;
  for (int64_t c : count_) flat.push_back(static_cast<double>(c));
  Tensor t = Tensor::from_vector(flat, {static_cast<int64_t>(flat.size())}, DType::kF64);
  comm.all_reduce(t);
  flat = t.to_vector();
  std::copy(flat.begin(), flat.begin() + static_cast<std::ptrdiff_t>(sum_.size()), sum_.begin());
  for (size_t i = 0; i < count_.size(); ++i) count_[i] = std::llround(flat[sum_.size() + i]);
}

int64_t HeadBucketTable::rows(int64_t layer, int64_t head, int64_t bucket) const {
  if (head < 0) {
    int64_t n = 0;
    for (int64_t h = 0; h < heads_; ++h) n += rows(layer, h, bucket);
    return n;
  }
  if (bucket >= 0) return count_[at(layer, head, bucket)];
  int64_t n = 0;
  for (size_t b = 0; b < buckets_.size(); ++b) n += count_[at(layer, head, static_cast<int64_t>(b))];
  return n;
}

double HeadBucketTable::mean(int64_t layer, int64_t head, int64_t bucket) const {
  if (head < 0) {
    double s = 0;
    for (int64_t h = 0; h < heads_; ++h) s += mean(layer, h, bucket);
    return heads_ ? s / static_cast<double>(heads_) : 0.0;
  }
  double s = 0;
  int64_t n = 0;
  for (size_t b = 0; b < buckets_.size(); ++b) {
    if (bucket >= 0 && static_cast<int64_t>(b) != bucket) continue;
    const size_t i = at(layer, head, static_cast<int64_t>(b));
    s += sum_[i];
    n += count_[i];
  }
  return n ? s / static_cast<double>(n) : 0.0;
}

std::vector<double> attention_row(const Tensor& q, const Tensor& k, const Tensor& q_pos,
                                  const Tensor& k_pos, int64_t b, int64_t h, int64_t i) {
  const QK x = load_qk(q, k, q_pos, k_pos);
  std::vector<double> p;
  row(x, b, h, i, p);
  return p;
}

Tensor attention_matrix(const Tensor& q, const Tensor& k, const Tensor& q_pos, const Tensor& k_pos) {
  const QK x = load_qk(q, k, q_pos, k_pos);
  Tensor out = Tensor::zeros({x.batch, x.hq, x.tq, x.tk}, DType::kF64);
  double* o = out.data<double>();
  std::vector<double> p;
  for (int64_t b = 0; b < x.batch; ++b)
    for (int64_t h = 0; h < x.hq; ++h)
      for (int64_t i = 0; i < x.tq; ++i) {
        row(x, b, h, i, p);
        std::copy(p.begin(), p.end(), o + ((b * x.hq + h) * x.tq + i) * x.tk);
      }
  return out;
}

namespace {

// Adds value(b, h, i, row buffer) of every query row (b, h, i) to `out` at
// bucket of q position (b, i); NaN: no row (nothing visible). Rows are
// independent, so they run in parallel (OpenMP) into a value per row, then
// are added in row order (the same sums whatever the thread count).
// Head h of `x` is head head0 + h of the table (tensor parallelism: this
// rank's heads start at tp_rank * Hq / tp).
template <class Value>
void add_rows(const QK& x, int64_t layer, int64_t width, int64_t head0, HeadBucketTable& out,
              const Value& value) {
  const int64_t n = x.batch * x.hq * x.tq;
  std::vector<double> values(static_cast<size_t>(n));
#pragma omp parallel for schedule(dynamic, 16)
  for (int64_t r = 0; r < n; ++r) {
    std::vector<double> buffer;
    values[static_cast<size_t>(r)] = value(r / (x.hq * x.tq), (r / x.tq) % x.hq, r % x.tq, buffer);
  }
  for (int64_t r = 0; r < n; ++r) {
    const double v = values[static_cast<size_t>(r)];
    if (std::isnan(v)) continue;
    const int64_t b = r / (x.hq * x.tq), h = (r / x.tq) % x.hq, i = r % x.tq;
    out.add(layer, head0 + h, bucket_of(x.q_pos[static_cast<size_t>(b * x.tq + i)], width, out), v);
  }
}

constexpr double kNoRow = std::numeric_limits<double>::quiet_NaN();

}  // namespace

namespace {

void add_distance(const QK& x, int64_t layer, int64_t width, int64_t head0, HeadBucketTable& out) {
  add_rows(x, layer, width, head0, out, [&](int64_t b, int64_t h, int64_t i, std::vector<double>& p) {
    if (!row(x, b, h, i, p)) return kNoRow;
    const int32_t pi = x.q_pos[static_cast<size_t>(b * x.tq + i)];
    double d = 0;
    for (int64_t j = 0; j < x.tk; ++j)
      d += p[static_cast<size_t>(j)] * (pi - x.k_pos[static_cast<size_t>(b * x.tk + j)]);
    return d;
  });
}

void add_js(const QK& a, const QK& c, int64_t layer, int64_t width, int64_t head0, HeadBucketTable& out) {
  ROTOR_CHECK(a.batch == c.batch && a.tq == c.tq && a.tk == c.tk && a.hq == c.hq)
      << "JS divergence of attention rows needs the same input and head count";
  add_rows(a, layer, width, head0, out, [&](int64_t b, int64_t h, int64_t i, std::vector<double>& pa) {
    std::vector<double> pb;
    if (!row(a, b, h, i, pa) || !row(c, b, h, i, pb)) return kNoRow;
    double js = 0;
    for (size_t j = 0; j < pa.size(); ++j) {
      const double m = 0.5 * (pa[j] + pb[j]);
      if (pa[j] > 0) js += 0.5 * pa[j] * std::log(pa[j] / m);
      if (pb[j] > 0) js += 0.5 * pb[j] * std::log(pb[j] / m);
    }
    return std::max(0.0, js);
  });
}

// Layer l's q (this rank's rows and heads) and k (every row of the sequence,
// this rank's kv heads) of the model's last forward pass on `shard`.
QK layer_qk(const LlamaModel& m, int64_t layer, const Batch& shard) {
  const BlockActivations& act = m.activations(layer);
  QK x = load_qk(act.q, act.k, shard.positions, shard.positions);
  gather_keys(x, *m.options().parallel.cp);
  return x;
}

// The batch with targets (evaluate() needs them; ignored) and positions, and
// this rank's context shard of it.
Batch prepared(const Batch& batch, const ParallelContext& par) {
  Batch b = with_targets(batch);
  b.positions = positions_or_iota(batch);
  return shard_for_context(b, par);
}

std::vector<PositionBucket> buckets_of(const Batch& batch, int64_t width) {
  const Tensor positions = positions_or_iota(batch);
  int32_t max_pos = 0;
  for (int64_t i = 0; i < positions.numel(); ++i) max_pos = std::max(max_pos, positions.data<int32_t>()[i]);
  return position_buckets(int64_t{max_pos} + 1, width);
}

}  // namespace

void add_attention_distance(const Tensor& q, const Tensor& k, const Tensor& positions, int64_t layer,
                            int64_t width, HeadBucketTable& out) {
  add_distance(load_qk(q, k, positions, positions), layer, width, 0, out);
}

void add_js_divergence(const Tensor& q_a, const Tensor& k_a, const Tensor& q_b, const Tensor& k_b,
                       const Tensor& positions, int64_t layer, int64_t width, HeadBucketTable& out) {
  add_js(load_qk(q_a, k_a, positions, positions), load_qk(q_b, k_b, positions, positions), layer, width,
         0, out);
}

absl::StatusOr<AttentionStats> attention_stats(LlamaModel& model, const Batch& batch, int64_t width) {
  ROTOR_RETURN_IF_ERROR(check_layout(model, batch));
  if (width < 1) return absl::InvalidArgumentError(absl::StrCat("bucket width ", width, " must be >= 1"));
  const ParallelContext& par = model.options().parallel;
  const int64_t layers = model.config().num_hidden_layers;
  const int64_t heads = model.config().num_attention_heads;
  AttentionStats out;
  out.bucket_width = width;
  out.entropy = HeadBucketTable(layers, heads, buckets_of(batch, width));
  out.distance = HeadBucketTable(layers, heads, out.entropy.buckets());
  const Batch shard = prepared(batch, par);
  ForwardStats stats;
  stats.want_attention_entropy = true;
  model.evaluate(shard, stats);
  if (static_cast<int64_t>(stats.attention_entropy.size()) != layers) {
    return absl::InternalError("the model returned no attention entropy");
  }
  const int64_t bsz = shard.positions.dim(0), t = shard.positions.dim(1);
  const int64_t local_heads = heads / par.tp_size(), head0 = par.tp_rank() * local_heads;
  const int32_t* pos = shard.positions.data<int32_t>();
  for (int64_t l = 0; l < layers; ++l) {
    // [B, Hq / tp, T / cp]: this rank's heads and query rows
    const std::vector<double> e = stats.attention_entropy[static_cast<size_t>(l)].to(Device::cpu()).to_vector();
    for (int64_t b = 0; b < bsz; ++b)
      for (int64_t h = 0; h < local_heads; ++h)
        for (int64_t i = 0; i < t; ++i)
          out.entropy.add(l, head0 + h, bucket_of(pos[b * t + i], width, out.entropy),
                          e[static_cast<size_t>((b * local_heads + h) * t + i)]);
    add_distance(layer_qk(model, l, shard), l, width, head0, out.distance);
  }
  sum_over_model_group(par, {&out.entropy, &out.distance});
  return out;
}

absl::StatusOr<HeadBucketTable> attention_js_divergence(LlamaModel& a, LlamaModel& b,
                                                        const Batch& batch, int64_t width) {
  ROTOR_RETURN_IF_ERROR(check_layout(a, batch));
  ROTOR_RETURN_IF_ERROR(check_layout(b, batch));
  if (width < 1) return absl::InvalidArgumentError(absl::StrCat("bucket width ", width, " must be >= 1"));
  const LlamaConfig& ca = a.config();
  const LlamaConfig& cb = b.config();
  if (ca.num_hidden_layers != cb.num_hidden_layers || ca.num_attention_heads != cb.num_attention_heads ||
      ca.num_key_value_heads != cb.num_key_value_heads) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the models differ in shape: ", ca.num_hidden_layers, " layers x ", ca.num_attention_heads, "/",
        ca.num_key_value_heads, " heads vs ", cb.num_hidden_layers, " x ", cb.num_attention_heads, "/",
        cb.num_key_value_heads));
  }
  const ParallelContext& pa = a.options().parallel;
  const ParallelContext& pb = b.options().parallel;
  if (pa.tp_size() != pb.tp_size() || pa.cp_size() != pb.cp_size()) {
    return absl::InvalidArgumentError("the models must share one parallel layout (tp, cp)");
  }
  HeadBucketTable out(ca.num_hidden_layers, ca.num_attention_heads, buckets_of(batch, width));
  const Batch shard = prepared(batch, pa);
  ForwardStats sa, sb;
  a.evaluate(shard, sa);
  b.evaluate(shard, sb);
  const int64_t head0 = pa.tp_rank() * (ca.num_attention_heads / pa.tp_size());
  for (int64_t l = 0; l < ca.num_hidden_layers; ++l) {
    add_js(layer_qk(a, l, shard), layer_qk(b, l, shard), l, width, head0, out);
  }
  sum_over_model_group(pa, {&out});
  return out;
}

std::vector<std::string> attention_csv_rows(const std::string& run, int64_t step, int64_t length,
                                            const AttentionStats& stats, const HeadBucketTable* js,
                                            const std::string& reference) {
  const int64_t layers = stats.entropy.layers(), heads = stats.entropy.heads();
  const std::vector<PositionBucket>& buckets = stats.entropy.buckets();
  std::vector<std::string> out;
  auto rows = [&](const HeadBucketTable& t, const char* metric, const std::string& ref) {
    for (int64_t l = 0; l < layers; ++l)
      for (int64_t h = -1; h < heads; ++h)
        for (int64_t b = -1; b < static_cast<int64_t>(buckets.size()); ++b) {
          if (b >= 0 && t.rows(l, h < 0 ? 0 : h, b) == 0) continue;
          out.push_back(absl::StrFormat("%s,%d,%d,%d,%d,%s,%s,%.8g,%s", csv_field(run), step, length, l, h,
                                        b < 0 ? std::string("all") : buckets[static_cast<size_t>(b)].label,
                                        metric, t.mean(l, h, b), csv_field(ref)));
        }
  };
  rows(stats.entropy, "entropy", "");
  rows(stats.distance, "distance", "");
  if (js != nullptr) rows(*js, "js_divergence", reference);
  return out;
}

}  // namespace rotor::eval
