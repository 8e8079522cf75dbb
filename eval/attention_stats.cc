// Attention statistics per layer and head; see attention_stats.h.
#include "eval/attention_stats.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/check.h"

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
  x.q = q.to_vector();
  x.k = k.to_vector();
  x.q_pos = positions_of(q_pos, x.batch, x.tq);
  x.k_pos = positions_of(k_pos, x.batch, x.tk);
  x.scale = 1.0 / std::sqrt(static_cast<double>(x.hd));
  return x;
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

absl::Status check_one_rank(const LlamaModel& m) {
  if (m.options().recompute) {
    return absl::FailedPreconditionError("attention statistics need a model built with recompute off");
  }
  if (m.options().parallel.tp_size() > 1 || m.options().parallel.cp_size() > 1) {
    return absl::FailedPreconditionError("attention statistics need a one-rank model (tp 1, cp 1)");
  }
  return absl::OkStatus();
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
template <class Value>
void add_rows(const QK& x, int64_t layer, int64_t width, HeadBucketTable& out, const Value& value) {
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
    out.add(layer, h, bucket_of(x.q_pos[static_cast<size_t>(b * x.tq + i)], width, out), v);
  }
}

constexpr double kNoRow = std::numeric_limits<double>::quiet_NaN();

}  // namespace

void add_attention_distance(const Tensor& q, const Tensor& k, const Tensor& positions, int64_t layer,
                            int64_t width, HeadBucketTable& out) {
  const QK x = load_qk(q, k, positions, positions);
  add_rows(x, layer, width, out, [&](int64_t b, int64_t h, int64_t i, std::vector<double>& p) {
    if (!row(x, b, h, i, p)) return kNoRow;
    const int32_t pi = x.q_pos[static_cast<size_t>(b * x.tq + i)];
    double d = 0;
    for (int64_t j = 0; j < x.tk; ++j)
      d += p[static_cast<size_t>(j)] * (pi - x.k_pos[static_cast<size_t>(b * x.tk + j)]);
    return d;
  });
}

void add_js_divergence(const Tensor& q_a, const Tensor& k_a, const Tensor& q_b, const Tensor& k_b,
                       const Tensor& positions, int64_t layer, int64_t width, HeadBucketTable& out) {
  const QK a = load_qk(q_a, k_a, positions, positions);
  const QK c = load_qk(q_b, k_b, positions, positions);
  ROTOR_CHECK(a.batch == c.batch && a.tq == c.tq && a.tk == c.tk && a.hq == c.hq)
      << "JS divergence of attention rows needs the same input and head count";
  add_rows(a, layer, width, out, [&](int64_t b, int64_t h, int64_t i, std::vector<double>& pa) {
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

absl::StatusOr<AttentionStats> attention_stats(LlamaModel& model, const Batch& batch, int64_t width) {
  if (absl::Status s = check_one_rank(model); !s.ok()) return s;
  if (width < 1) return absl::InvalidArgumentError(absl::StrCat("bucket width ", width, " must be >= 1"));
  const Tensor positions = positions_or_iota(batch);
  int32_t max_pos = 0;
  for (int64_t i = 0; i < positions.numel(); ++i) max_pos = std::max(max_pos, positions.data<int32_t>()[i]);
  const int64_t layers = model.config().num_hidden_layers;
  const int64_t heads = model.config().num_attention_heads;
  AttentionStats out;
  out.bucket_width = width;
  const std::vector<PositionBucket> buckets = position_buckets(int64_t{max_pos} + 1, width);
  out.entropy = HeadBucketTable(layers, heads, buckets);
  out.distance = HeadBucketTable(layers, heads, buckets);
  ForwardStats stats;
  stats.want_attention_entropy = true;
  model.evaluate(with_targets(batch), stats);
  if (static_cast<int64_t>(stats.attention_entropy.size()) != layers) {
    return absl::InternalError("the model returned no attention entropy");
  }
  const int64_t bsz = positions.dim(0), t = positions.dim(1);
  const int32_t* pos = positions.data<int32_t>();
  for (int64_t l = 0; l < layers; ++l) {
    const std::vector<double> e = stats.attention_entropy[static_cast<size_t>(l)].to_vector();  // [B, Hq, T]
    for (int64_t b = 0; b < bsz; ++b)
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t i = 0; i < t; ++i)
          out.entropy.add(l, h, bucket_of(pos[b * t + i], width, out.entropy),
                          e[static_cast<size_t>((b * heads + h) * t + i)]);
    const BlockActivations& act = model.activations(l);
    add_attention_distance(act.q, act.k, positions, l, width, out.distance);
  }
  return out;
}

absl::StatusOr<HeadBucketTable> attention_js_divergence(LlamaModel& a, LlamaModel& b,
                                                        const Batch& batch, int64_t width) {
  if (absl::Status s = check_one_rank(a); !s.ok()) return s;
  if (absl::Status s = check_one_rank(b); !s.ok()) return s;
  if (width < 1) return absl::InvalidArgumentError(absl::StrCat("bucket width ", width, " must be >= 1"));
  const LlamaConfig& ca = a.config();
  const LlamaConfig& cb = b.config();
  if (ca.num_hidden_layers != cb.num_hidden_layers || ca.num_attention_heads != cb.num_attention_heads) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the models differ in shape: ", ca.num_hidden_layers, " layers x ", ca.num_attention_heads,
        " heads vs ", cb.num_hidden_layers, " x ", cb.num_attention_heads));
  }
  const Tensor positions = positions_or_iota(batch);
  int32_t max_pos = 0;
  for (int64_t i = 0; i < positions.numel(); ++i) max_pos = std::max(max_pos, positions.data<int32_t>()[i]);
  HeadBucketTable out(ca.num_hidden_layers, ca.num_attention_heads,
                      position_buckets(int64_t{max_pos} + 1, width));
  ForwardStats sa, sb;
  a.evaluate(with_targets(batch), sa);
  b.evaluate(with_targets(batch), sb);
  for (int64_t l = 0; l < ca.num_hidden_layers; ++l) {
    const BlockActivations& x = a.activations(l);
    const BlockActivations& y = b.activations(l);
    add_js_divergence(x.q, x.k, y.q, y.k, positions, l, width, out);
  }
  return out;
}

}  // namespace rotor::eval
