// Tests of the CPU reference of blockwise attention (kernels/attention.h):
// forward against an explicit softmax in double, block splitting + merge,
// document masking, the zigzag ring layout, merge stability, backward against
// finite differences and backward accumulation over blocks.
#include "kernels/attention.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "tests/common/testing.h"

namespace rotor {
namespace {

using testing::expect_close;
using testing::expect_finite_nonzero;
using testing::expect_gradient_matches;
using testing::random_tensor;
using testing::weighted_sum;

constexpr double kInf = std::numeric_limits<double>::infinity();

template <class T>
DType dtype_of() {
  return DTypeOf<T>::value;
}

// [B, T] i32 with the same `values` in every batch row.
Tensor i32_rows(int64_t B, const std::vector<int>& values) {
  std::vector<double> all;
  for (int64_t b = 0; b < B; ++b) all.insert(all.end(), values.begin(), values.end());
  return Tensor::from_vector(all, Shape{B, static_cast<int64_t>(values.size())}, DType::kI32);
}

std::vector<int> iota(int start, int n) {
  std::vector<int> v(n);
  for (int i = 0; i < n; ++i) v[i] = start + i;
  return v;
}

// Bytes before / of / after `dim`, for slicing contiguous tensors.
struct Split {
  int64_t outer = 1, inner_bytes;
};
Split split_at(const Tensor& t, int dim) {
  Split s{1, static_cast<int64_t>(dtype_size(t.dtype()))};
  for (int a = 0; a < dim; ++a) s.outer *= t.dim(a);
  for (int a = dim + 1; a < t.ndim(); ++a) s.inner_bytes *= t.dim(a);
  return s;
}

// A copy of elements [start, start + len) of t along `dim`.
Tensor slice(const Tensor& t, int dim, int64_t start, int64_t len) {
  std::vector<int64_t> dims = t.shape().vec();
  dims[dim] = len;
  Tensor r = Tensor::empty(Shape(dims), t.dtype());
  const Split s = split_at(t, dim);
  for (int64_t o = 0; o < s.outer; ++o)
    std::memcpy(static_cast<char*>(r.raw()) + o * len * s.inner_bytes,
                static_cast<const char*>(t.raw()) + (o * t.dim(dim) + start) * s.inner_bytes,
                len * s.inner_bytes);
  return r;
}

// Writes src into dst at [start, start + src.dim(dim)) along `dim`.
void paste(const Tensor& dst, int dim, int64_t start, const Tensor& src) {
  const Split s = split_at(dst, dim);
  const int64_t len = src.dim(dim);
  for (int64_t o = 0; o < s.outer; ++o)
    std::memcpy(static_cast<char*>(dst.raw()) + (o * dst.dim(dim) + start) * s.inner_bytes,
                static_cast<const char*>(src.raw()) + o * len * s.inner_bytes,
                len * s.inner_bytes);
}

// a and b concatenated along `dim`.
Tensor cat(int dim, const Tensor& a, const Tensor& b) {
  std::vector<int64_t> dims = a.shape().vec();
  dims[dim] += b.dim(dim);
  Tensor r = Tensor::empty(Shape(dims), a.dtype());
  paste(r, dim, 0, a);
  paste(r, dim, a.dim(dim), b);
  return r;
}

struct Result {
  Tensor out;      // [B, Tq, Hq, D]
  Tensor lse;      // [B, Hq, Tq]
  Tensor entropy;  // [B, Hq, Tq]
};

// attention_forward into fresh NaN-filled outputs (so unwritten elements show).
Result forward(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionMask& mask,
               double scale, bool with_entropy = true) {
  const int64_t B = q.dim(0), Tq = q.dim(1), Hq = q.dim(2);
  Result r{Tensor::empty(q.shape(), q.dtype()), Tensor::empty(Shape{B, Hq, Tq}, q.dtype()),
           with_entropy ? Tensor::empty(Shape{B, Hq, Tq}, q.dtype()) : Tensor()};
  r.out.fill(std::nan(""));
  r.lse.fill(std::nan(""));
  if (with_entropy) r.entropy.fill(std::nan(""));
  attention_forward(q, k, v, mask, scale, r.out, r.lse, r.entropy);
  return r;
}

// Explicit full softmax in double, without the max shift (inputs are O(1)):
// p_j = exp(s_j) / sum exp(s_k) over visible keys, lse = ln sum exp(s_k),
// entropy = -sum p_j ln p_j.
Result reference(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionMask& m,
                 double scale) {
  const int64_t B = q.dim(0), Tq = q.dim(1), Hq = q.dim(2), D = q.dim(3);
  const int64_t Tk = k.dim(1), Hkv = k.dim(2), group = Hq / Hkv;
  Result r{Tensor::zeros(q.shape(), DType::kF64), Tensor::zeros(Shape{B, Hq, Tq}, DType::kF64),
           Tensor::zeros(Shape{B, Hq, Tq}, DType::kF64)};
  auto at = [](const Tensor& t, int64_t b, int64_t i, int64_t h, int64_t x) {
    return t.item(((b * t.dim(1) + i) * t.dim(2) + h) * t.dim(3) + x);
  };
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < Hq; ++h)
      for (int64_t i = 0; i < Tq; ++i) {
        std::vector<int64_t> keys;
        std::vector<double> e;
        double z = 0;
        for (int64_t j = 0; j < Tk; ++j) {
          if (m.causal && m.k_pos.item(b * Tk + j) > m.q_pos.item(b * Tq + i)) continue;
          if (m.q_seg.defined() && m.q_seg.item(b * Tq + i) != m.k_seg.item(b * Tk + j))
            continue;
          double s = 0;
          for (int64_t x = 0; x < D; ++x) s += at(q, b, i, h, x) * at(k, b, j, h / group, x);
          keys.push_back(j);
          e.push_back(std::exp(scale * s));
          z += e.back();
        }
        const int64_t row = (b * Hq + h) * Tq + i;
        if (keys.empty()) {
          r.lse.data<double>()[row] = -kInf;
          continue;
        }
        double ent = 0;
        double* o = r.out.data<double>() + ((b * Tq + i) * Hq + h) * D;
        for (size_t n = 0; n < keys.size(); ++n) {
          const double p = e[n] / z;
          ent -= p * std::log(p);
          for (int64_t x = 0; x < D; ++x) o[x] += p * at(v, b, keys[n], h / group, x);
        }
        r.lse.data<double>()[row] = std::log(z);
        r.entropy.data<double>()[row] = ent;
      }
  return r;
}

// lse may hold -inf (rows with no visible key): those must match exactly, the
// finite ones within tolerance.
void expect_lse_close(const Tensor& got, const Tensor& want, double atol, double rtol,
                      const std::string& what) {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  std::vector<double> g, w;
  for (int64_t i = 0; i < want.numel(); ++i) {
    if (want.item(i) == -kInf) {
      EXPECT_EQ(got.item(i), -kInf) << what << ": element " << i;
    } else {
      g.push_back(got.item(i));
      w.push_back(want.item(i));
    }
  }
  const Shape s{static_cast<int64_t>(w.size())};
  expect_close(Tensor::from_vector(g, s, DType::kF64), Tensor::from_vector(w, s, DType::kF64),
               atol, rtol, what + " (finite rows)");
}

void expect_result_close(const Result& got, const Result& want, double atol, double rtol,
                         const std::string& what) {
  expect_close(got.out, want.out, atol, rtol, what + " out");
  expect_lse_close(got.lse, want.lse, atol, rtol, what + " lse");
  expect_close(got.entropy, want.entropy, atol, rtol, what + " entropy");
}

// Tolerances. f64: the kernel and the references only reorder sums of O(1)
// terms, so 1e-12 leaves a wide margin over eps_f64 ~ 2e-16. f32: the same
// reordering of sums of ~20 O(1) values costs a few eps_f32 ~ 1.2e-7 each, so
// 1e-5 absolute and relative is a safe bound.
template <class T>
constexpr double kTol = sizeof(T) == 4 ? 1e-5 : 1e-12;

// (a) Forward against the explicit full softmax in double.
template <class T>
void forward_matches_full_softmax(bool causal, int64_t T_ = 7, int64_t D = 8) {
  const int64_t B = 2, Hq = 4, Hkv = 2;
  const double scale = 1.0 / std::sqrt(double(D));
  const Tensor q = random_tensor(Shape{B, T_, Hq, D}, dtype_of<T>(), 1, -2, 2);
  const Tensor k = random_tensor(Shape{B, T_, Hkv, D}, dtype_of<T>(), 2, -2, 2);
  const Tensor v = random_tensor(Shape{B, T_, Hkv, D}, dtype_of<T>(), 3);
  const AttentionMask m{i32_rows(B, iota(0, T_)), i32_rows(B, iota(0, T_)), {}, {}, causal};
  expect_result_close(forward(q, k, v, m, scale), reference(q, k, v, m, scale), kTol<T>,
                      kTol<T>, causal ? "causal" : "full");
}

TEST(AttentionForward, MatchesFullSoftmaxF32) {
  forward_matches_full_softmax<float>(true);
  forward_matches_full_softmax<float>(false);
}
TEST(AttentionForward, MatchesFullSoftmaxF64) {
  forward_matches_full_softmax<double>(true);
  forward_matches_full_softmax<double>(false);
}
// Large enough (3e5 multiply-adds) to take the kernel's multi-threaded path.
TEST(AttentionForward, MatchesFullSoftmaxMultiThreaded) {
  forward_matches_full_softmax<float>(true, 48, 16);
}

// More query rows than one tile of the kernel (64): 130 queries at positions
// 0..129 against 130 keys at positions 0..129 (the kernel skips keys past each
// tile's last query), in reverse order (k_pos not sorted: no skipping) and at
// 80..209 (the first tile sees no key of the block: out 0, lse -inf).
template <class T>
void many_rows_match_full_softmax() {
  const int64_t B = 2, T_ = 130, Hq = 4, Hkv = 2, D = 8;
  const double scale = 1.0 / std::sqrt(double(D));
  const Tensor q = random_tensor(Shape{B, T_, Hq, D}, dtype_of<T>(), 91, -2, 2);
  const Tensor k = random_tensor(Shape{B, T_, Hkv, D}, dtype_of<T>(), 92, -2, 2);
  const Tensor v = random_tensor(Shape{B, T_, Hkv, D}, dtype_of<T>(), 93);
  std::vector<int> reversed = iota(0, T_);
  std::reverse(reversed.begin(), reversed.end());
  const Tensor q_pos = i32_rows(B, iota(0, T_));
  const std::pair<std::string, Tensor> k_positions[] = {
      {"in order", q_pos},
      {"reversed", i32_rows(B, reversed)},
      {"from 80", i32_rows(B, iota(80, T_))}};
  for (const auto& [what, k_pos] : k_positions) {
    const AttentionMask m{q_pos, k_pos, {}, {}, true};
    expect_result_close(forward(q, k, v, m, scale), reference(q, k, v, m, scale), kTol<T>,
                        kTol<T>, "keys " + what);
  }
}

TEST(AttentionForward, ManyRowsMatchFullSoftmaxF32) { many_rows_match_full_softmax<float>(); }
TEST(AttentionForward, ManyRowsMatchFullSoftmaxF64) { many_rows_match_full_softmax<double>(); }

// (b) Keys split into blocks of 5, 6 and 9 tokens (of 20), each block run with
// its k_pos slice and merged into an accumulator initialised by the first
// block taken, equals attention over all keys. Queries 0..4 see nothing of
// the later blocks (merging the identity), queries 0..10 nothing of the last.
template <class T>
void block_merge_equals_full() {
  const int64_t B = 2, T_ = 20, Hq = 4, Hkv = 2, D = 8;
  const double scale = 1.0 / std::sqrt(double(D));
  const Tensor q = random_tensor(Shape{B, T_, Hq, D}, dtype_of<T>(), 11, -2, 2);
  const Tensor k = random_tensor(Shape{B, T_, Hkv, D}, dtype_of<T>(), 12, -2, 2);
  const Tensor v = random_tensor(Shape{B, T_, Hkv, D}, dtype_of<T>(), 13);
  const Tensor pos = i32_rows(B, iota(0, T_));
  const Result full = forward(q, k, v, {pos, pos, {}, {}, true}, scale);
  const int64_t starts[3] = {0, 5, 11}, lens[3] = {5, 6, 9};
  // In order, and in a ring order that starts from the last block.
  for (const std::vector<int>& order : {std::vector<int>{0, 1, 2}, std::vector<int>{2, 0, 1}}) {
    Result acc;
    for (int blk : order) {
      const int64_t s = starts[blk], n = lens[blk];
      const AttentionMask m{pos, slice(pos, 1, s, n), {}, {}, true};
      Result r = forward(q, slice(k, 1, s, n), slice(v, 1, s, n), m, scale);
      if (!acc.out.defined()) acc = r;
      else attention_merge(acc.out, acc.lse, acc.entropy, r.out, r.lse, r.entropy);
    }
    expect_result_close(acc, full, kTol<T>, kTol<T>, "merged blocks starting at " +
                                                         std::to_string(order[0]));
  }
}

TEST(AttentionMerge, BlocksEqualFullF32) { block_merge_equals_full<float>(); }
TEST(AttentionMerge, BlocksEqualFullF64) { block_merge_equals_full<double>(); }

// (c) Three documents of lengths 4, 7 and 5 packed in one row with segment ids
// equal attention run separately per document; positions continuous over the
// row or reset per document; causal and not.
TEST(AttentionForward, SegmentsEqualSeparateDocuments) {
  const int64_t B = 2, T_ = 16, Hq = 4, Hkv = 2, D = 8;
  const double scale = 1.0 / std::sqrt(double(D));
  const Tensor q = random_tensor(Shape{B, T_, Hq, D}, DType::kF32, 21, -2, 2);
  const Tensor k = random_tensor(Shape{B, T_, Hkv, D}, DType::kF32, 22, -2, 2);
  const Tensor v = random_tensor(Shape{B, T_, Hkv, D}, DType::kF32, 23);
  const int lens[3] = {4, 7, 5};
  std::vector<int> seg, reset;
  for (int d = 0; d < 3; ++d)
    for (int t = 0; t < lens[d]; ++t) {
      seg.push_back(10 + d);
      reset.push_back(t);
    }
  const Tensor seg_t = i32_rows(B, seg);
  for (bool continuous : {true, false}) {
    for (bool causal : {true, false}) {
      const Tensor pos = i32_rows(B, continuous ? iota(0, T_) : reset);
      const Result packed = forward(q, k, v, {pos, pos, seg_t, seg_t, causal}, scale);
      Result want{Tensor::zeros(q.shape(), DType::kF32),
                  Tensor::zeros(Shape{B, Hq, T_}, DType::kF32),
                  Tensor::zeros(Shape{B, Hq, T_}, DType::kF32)};
      int64_t start = 0;
      for (int d = 0; d < 3; ++d) {
        const Tensor p = slice(pos, 1, start, lens[d]);
        const Result r = forward(slice(q, 1, start, lens[d]), slice(k, 1, start, lens[d]),
                                 slice(v, 1, start, lens[d]), {p, p, {}, {}, causal}, scale);
        paste(want.out, 1, start, r.out);
        paste(want.lse, 2, start, r.lse);
        paste(want.entropy, 2, start, r.entropy);
        start += lens[d];
      }
      // Same f32 math over the same visible keys in the same order: only
      // rounding can differ, far below 1e-6 for O(1) values.
      expect_result_close(packed, want, 1e-6, 1e-6,
                          std::string(continuous ? "continuous" : "reset") +
                              (causal ? " causal" : " full"));
    }
  }
}

// (d) Zigzag context parallelism: a causal sequence of 16 tokens in 2cp = 4
// chunks of 4; rank r holds chunks r and 2cp-1-r (rank 0: chunks 0 and 3).
TEST(AttentionZigzag, MergedChunksEqualFullCausal) {
  const int64_t B = 2, T_ = 16, Hq = 4, Hkv = 2, D = 8, C = 4;
  const double scale = 1.0 / std::sqrt(double(D));
  const Tensor q = random_tensor(Shape{B, T_, Hq, D}, DType::kF32, 31, -2, 2);
  const Tensor k = random_tensor(Shape{B, T_, Hkv, D}, DType::kF32, 32, -2, 2);
  const Tensor v = random_tensor(Shape{B, T_, Hkv, D}, DType::kF32, 33);
  const Tensor pos = i32_rows(B, iota(0, T_));
  const Result full = forward(q, k, v, {pos, pos, {}, {}, true}, scale);
  auto chunk = [&](const Tensor& t, int c) { return slice(t, 1, c * C, C); };

  // Every query chunk against every key chunk, starting from its own chunk (the
  // diagonal, never empty) as a ring step would.
  for (int qc = 0; qc < 4; ++qc) {
    const Tensor qq = chunk(q, qc), qp = chunk(pos, qc);
    Result acc = forward(qq, chunk(k, qc), chunk(v, qc), {qp, qp, {}, {}, true}, scale);
    for (int step = 1; step < 4; ++step) {
      const int kc = (qc + step) % 4;
      const Result r =
          forward(qq, chunk(k, kc), chunk(v, kc), {qp, chunk(pos, kc), {}, {}, true}, scale);
      const std::string what = "q chunk " + std::to_string(qc) + " k chunk " +
                               std::to_string(kc);
      if (kc > qc) {
        // All keys after all queries: exactly the identity of the merge ...
        for (int64_t i = 0; i < r.out.numel(); ++i) ASSERT_EQ(r.out.item(i), 0.0) << what;
        for (int64_t i = 0; i < r.lse.numel(); ++i) {
          ASSERT_EQ(r.lse.item(i), -kInf) << what;
          ASSERT_EQ(r.entropy.item(i), 0.0) << what;
        }
        // ... and merging it changes nothing, bit for bit.
        const Result before{acc.out.clone(), acc.lse.clone(), acc.entropy.clone()};
        attention_merge(acc.out, acc.lse, acc.entropy, r.out, r.lse, r.entropy);
        EXPECT_EQ(acc.out.to_vector(), before.out.to_vector()) << what;
        EXPECT_EQ(acc.lse.to_vector(), before.lse.to_vector()) << what;
        EXPECT_EQ(acc.entropy.to_vector(), before.entropy.to_vector()) << what;
      } else {
        attention_merge(acc.out, acc.lse, acc.entropy, r.out, r.lse, r.entropy);
      }
    }
    const Result want{chunk(full.out, qc), slice(full.lse, 2, qc * C, C),
                      slice(full.entropy, 2, qc * C, C)};
    expect_result_close(acc, want, kTol<float>, kTol<float>,
                        "query chunk " + std::to_string(qc));
  }

  // Rank-level blocks: rank r's 8 local tokens (non-contiguous positions) against
  // its own K/V, then the other rank's, as the ring delivers them.
  auto local = [&](const Tensor& t, int r) { return cat(1, chunk(t, r), chunk(t, 3 - r)); };
  auto local_rows = [&](const Tensor& t, int r) {  // [B, H, T] row-major by token
    return cat(2, slice(t, 2, r * C, C), slice(t, 2, (3 - r) * C, C));
  };
  for (int rank = 0; rank < 2; ++rank) {
    const Tensor qq = local(q, rank), qp = local(pos, rank);
    Result acc;
    for (int step = 0; step < 2; ++step) {
      const int src = (rank - step + 2) % 2;
      Result r = forward(qq, local(k, src), local(v, src), {qp, local(pos, src), {}, {}, true},
                         scale);
      if (step == 0) acc = r;
      else attention_merge(acc.out, acc.lse, acc.entropy, r.out, r.lse, r.entropy);
    }
    const Result want{local(full.out, rank), local_rows(full.lse, rank),
                      local_rows(full.entropy, rank)};
    expect_result_close(acc, want, kTol<float>, kTol<float>, "rank " + std::to_string(rank));
  }
}

// (e) Merge of hand-picked rows against their analytic values. Row by row:
// accumulator (lse_a, out_a, H_a), block (lse_b, out_b, H_b), expected result.
struct MergeCase {
  double la, oa0, oa1, ha, lb, ob0, ob1, hb;
  double lse, o0, o1, h;
};

template <class T>
void merge_stability() {
  const double ln2 = std::log(2.0), e = std::exp(1.0);
  // -1e30 and -1e30 + 1 round to the same value in f32 (and f64): equal LSEs at
  // a magnitude where exp(lse) and lse - (lse_b - H_b) lose everything.
  const double big = static_cast<T>(-1e30), big1 = static_cast<T>(-1e30 + 1);
  ASSERT_EQ(big, big1);
  // lse_a = -1000, lse_b = -999: exp of either underflows to 0 even in f64.
  const double wa = 1 / (1 + e), wb = e / (1 + e);
  const double w200 = std::exp(-200.0);  // 0 in f32, 1.4e-87 in f64
  const std::vector<MergeCase> cases = {
      // equal LSEs: weights 1/2, lse + ln 2, entropy + ln 2
      {0.25, 1, -2, 0.5, 0.25, 3, 0.5, 1.5, 0.25 + ln2, 2, -0.75, 1 + ln2},
      {big, 1, -2, 0.5, big1, 3, 0.5, 1.5, big + ln2, 2, -0.75, 1 + ln2},
      {-1000, 1, -2, 0.5, -999, 3, 0.5, 1.5, -999 + std::log1p(1 / e), wa * 1 + wb * 3,
       wa * -2 + wb * 0.5, wa * (0.5 - std::log(wa)) + wb * (1.5 - std::log(wb))},
      // one side -inf: the other side unchanged
      {-kInf, 0, 0, 0, 0.7, 3, 0.5, 1.5, 0.7, 3, 0.5, 1.5},
      {0.7, 1, -2, 0.5, -kInf, 0, 0, 0, 0.7, 1, -2, 0.5},
      // both -inf: the identity
      {-kInf, 0, 0, 0, -kInf, 0, 0, 0, -kInf, 0, 0, 0},
      // a negligible block: weight exp(-200), exactly 0 in f32
      {0, 1, -2, 0.5, -200, 3, 0.5, 1.5, std::log1p(w200), (1 + 3 * w200) / (1 + w200),
       (-2 + 0.5 * w200) / (1 + w200), 0.5 + (1.5 + 200) * w200},
      {0.5, 1, -2, 0.5, big, 3, 0.5, 1.5, 0.5, 1, -2, 0.5},
  };
  const int64_t N = static_cast<int64_t>(cases.size());
  std::vector<double> la, lb, ha, hb, oa, ob, want_out;
  for (const MergeCase& c : cases) {
    la.push_back(c.la), lb.push_back(c.lb), ha.push_back(c.ha), hb.push_back(c.hb);
    oa.insert(oa.end(), {c.oa0, c.oa1}), ob.insert(ob.end(), {c.ob0, c.ob1});
    want_out.insert(want_out.end(), {c.o0, c.o1});
  }
  expect_finite_nonzero(Tensor::from_vector(want_out, Shape{N * 2}, DType::kF64),
                        "merge expected out");
  // f32: one logaddexp and a two-term weighted sum of O(1) values, a few eps_f32.
  const double tol = sizeof(T) == 4 ? 2e-6 : 1e-14;
  const DType dt = dtype_of<T>();
  for (bool with_entropy : {true, false}) {
    const Tensor out_a = Tensor::from_vector(oa, Shape{1, N, 1, 2}, dt);
    const Tensor lse_a = Tensor::from_vector(la, Shape{1, 1, N}, dt);
    const Tensor ent_a = with_entropy ? Tensor::from_vector(ha, Shape{1, 1, N}, dt) : Tensor();
    const Tensor ent_b = with_entropy ? Tensor::from_vector(hb, Shape{1, 1, N}, dt) : Tensor();
    attention_merge(out_a, lse_a, ent_a, Tensor::from_vector(ob, Shape{1, N, 1, 2}, dt),
                    Tensor::from_vector(lb, Shape{1, 1, N}, dt), ent_b);
    auto near = [&](double got, double want, const std::string& what) {
      ASSERT_FALSE(std::isnan(got)) << what;
      if (std::isinf(want)) EXPECT_EQ(got, want) << what;
      else EXPECT_NEAR(got, want, tol * (1 + std::fabs(want))) << what;
    };
    for (int64_t n = 0; n < N; ++n) {
      const std::string what = "case " + std::to_string(n);
      near(lse_a.item(n), cases[n].lse, what + " lse");
      near(out_a.item(2 * n), cases[n].o0, what + " out[0]");
      near(out_a.item(2 * n + 1), cases[n].o1, what + " out[1]");
      if (with_entropy) near(ent_a.item(n), cases[n].h, what + " entropy");
    }
  }
}

TEST(AttentionMerge, StableF32) { merge_stability<float>(); }
TEST(AttentionMerge, StableF64) { merge_stability<double>(); }

// (f) Backward against central finite differences of loss = sum W * out, in
// f64 (tolerances in tests/common/testing.h), for dq, dk and dv.
void check_gradients(int64_t B, int64_t Hq, int64_t Hkv, const AttentionMask& m,
                     uint64_t seed, const std::string& what) {
  const int64_t Tq = m.q_pos.dim(1), Tk = m.k_pos.dim(1), D = 4;
  const double scale = 0.5;
  const Tensor q = random_tensor(Shape{B, Tq, Hq, D}, DType::kF64, seed, -1.5, 1.5);
  const Tensor k = random_tensor(Shape{B, Tk, Hkv, D}, DType::kF64, seed + 1, -1.5, 1.5);
  const Tensor v = random_tensor(Shape{B, Tk, Hkv, D}, DType::kF64, seed + 2);
  const Tensor w = random_tensor(q.shape(), DType::kF64, seed + 3);
  auto loss = [&] { return weighted_sum(forward(q, k, v, m, scale, false).out, w); };
  const Result r = forward(q, k, v, m, scale, false);
  const Tensor dq = Tensor::zeros(q.shape(), DType::kF64);
  const Tensor dk = Tensor::zeros(k.shape(), DType::kF64);
  const Tensor dv = Tensor::zeros(v.shape(), DType::kF64);
  attention_backward(q, k, v, m, scale, r.out, r.lse, w, dq, dk, dv);
  expect_gradient_matches(q, dq, loss, what + " dq");
  expect_gradient_matches(k, dk, loss, what + " dk");
  expect_gradient_matches(v, dv, loss, what + " dv");
}

TEST(AttentionBackward, GqaCausalMatchesFiniteDifferences) {
  const Tensor pos = i32_rows(2, iota(0, 5));
  check_gradients(2, 4, 2, {pos, pos, {}, {}, true}, 41, "gqa causal");
}

TEST(AttentionBackward, SegmentsMatchFiniteDifferences) {
  const Tensor pos = i32_rows(2, {0, 1, 0, 1, 2, 0});
  const Tensor seg = i32_rows(2, {0, 0, 1, 1, 1, 2});
  check_gradients(2, 4, 2, {pos, pos, seg, seg, true}, 51, "segments");
}

TEST(AttentionBackward, OffsetPositionsMatchFiniteDifferences) {
  // Queries 8..13 against keys 3..10: rows 8 and 9 are partially masked.
  const Tensor k_pos = i32_rows(1, iota(3, 8));
  check_gradients(1, 2, 1, {i32_rows(1, iota(8, 6)), k_pos, {}, {}, true}, 61, "offset");
  // Queries 0..5 against keys 3..10: rows 0..2 see no key (lse = -inf).
  check_gradients(1, 2, 1, {i32_rows(1, iota(0, 6)), k_pos, {}, {}, true}, 71, "empty rows");
}

// Two query tiles of the kernel (70 rows): keys in order, reversed (no key
// skipping) and from 64 (the first tile sees no key of the block).
TEST(AttentionBackward, ManyRowsMatchFiniteDifferences) {
  const int64_t T_ = 70;
  std::vector<int> reversed = iota(0, T_);
  std::reverse(reversed.begin(), reversed.end());
  const Tensor q_pos = i32_rows(1, iota(0, T_));
  check_gradients(1, 2, 1, {q_pos, q_pos, {}, {}, true}, 101, "many rows, keys in order");
  check_gradients(1, 2, 1, {q_pos, i32_rows(1, reversed), {}, {}, true}, 111,
                  "many rows, keys reversed");
  check_gradients(1, 2, 1, {q_pos, i32_rows(1, iota(64, T_)), {}, {}, true}, 121,
                  "many rows, keys from 64");
}

// (g) Backward of key blocks (with the final merged out and lse) accumulates
// into dq and sums to the backward over all keys; likewise query blocks into
// dk and dv. Also: two identical calls give bit-identical gradients. The full
// call (1.3e5 multiply-adds) takes the kernel's multi-threaded path, the block
// calls the single-threaded one.
template <class T>
void backward_accumulates() {
  const int64_t B = 2, T_ = 32, Hq = 4, Hkv = 2, D = 16;
  const double scale = 0.25;
  const DType dt = dtype_of<T>();
  const Tensor q = random_tensor(Shape{B, T_, Hq, D}, dt, 81, -1.5, 1.5);
  const Tensor k = random_tensor(Shape{B, T_, Hkv, D}, dt, 82, -1.5, 1.5);
  const Tensor v = random_tensor(Shape{B, T_, Hkv, D}, dt, 83);
  const Tensor dout = random_tensor(q.shape(), dt, 84);
  const Tensor pos = i32_rows(B, iota(0, T_));
  const Result r = forward(q, k, v, {pos, pos, {}, {}, true}, scale, false);
  auto backward = [&](const AttentionMask& m, const Tensor& qq, const Tensor& kk,
                      const Tensor& vv, const Tensor& out, const Tensor& lse, const Tensor& g,
                      const Tensor& dq, const Tensor& dk, const Tensor& dv) {
    attention_backward(qq, kk, vv, m, scale, out, lse, g, dq, dk, dv);
  };
  const Tensor dq = Tensor::zeros(q.shape(), dt), dk = Tensor::zeros(k.shape(), dt),
               dv = Tensor::zeros(v.shape(), dt);
  backward({pos, pos, {}, {}, true}, q, k, v, r.out, r.lse, dout, dq, dk, dv);
  {
    const Tensor dq2 = Tensor::zeros(q.shape(), dt), dk2 = Tensor::zeros(k.shape(), dt),
                 dv2 = Tensor::zeros(v.shape(), dt);
    backward({pos, pos, {}, {}, true}, q, k, v, r.out, r.lse, dout, dq2, dk2, dv2);
    EXPECT_EQ(dq2.to_vector(), dq.to_vector());
    EXPECT_EQ(dk2.to_vector(), dk.to_vector());
    EXPECT_EQ(dv2.to_vector(), dv.to_vector());
  }

  // Key blocks 0..11 and 12..31 into one dq that starts non-zero.
  const Tensor dq0 = random_tensor(q.shape(), dt, 85);
  const Tensor dq_acc = dq0.clone();
  Tensor dk_parts[2], dv_parts[2];
  const int64_t ks[2] = {0, 12}, kn[2] = {12, 20};
  for (int p = 0; p < 2; ++p) {
    dk_parts[p] = Tensor::zeros(Shape{B, kn[p], Hkv, D}, dt);
    dv_parts[p] = Tensor::zeros(Shape{B, kn[p], Hkv, D}, dt);
    backward({pos, slice(pos, 1, ks[p], kn[p]), {}, {}, true}, q, slice(k, 1, ks[p], kn[p]),
             slice(v, 1, ks[p], kn[p]), r.out, r.lse, dout, dq_acc, dk_parts[p], dv_parts[p]);
  }
  Tensor want_dq = dq0.clone();
  for (int64_t i = 0; i < dq.numel(); ++i) want_dq.data<T>()[i] += dq.data<T>()[i];
  expect_close(dq_acc, want_dq, kTol<T>, kTol<T>, "dq over key blocks");
  expect_close(cat(1, dk_parts[0], dk_parts[1]), dk, kTol<T>, kTol<T>, "dk of key blocks");
  expect_close(cat(1, dv_parts[0], dv_parts[1]), dv, kTol<T>, kTol<T>, "dv of key blocks");

  // Query blocks 0..19 and 20..31 into one dk and dv.
  const Tensor dk_acc = Tensor::zeros(k.shape(), dt), dv_acc = Tensor::zeros(v.shape(), dt);
  Tensor dq_parts[2];
  const int64_t qs[2] = {0, 20}, qn[2] = {20, 12};
  for (int p = 0; p < 2; ++p) {
    dq_parts[p] = Tensor::zeros(Shape{B, qn[p], Hq, D}, dt);
    backward({slice(pos, 1, qs[p], qn[p]), pos, {}, {}, true}, slice(q, 1, qs[p], qn[p]), k, v,
             slice(r.out, 1, qs[p], qn[p]), slice(r.lse, 2, qs[p], qn[p]),
             slice(dout, 1, qs[p], qn[p]), dq_parts[p], dk_acc, dv_acc);
  }
  expect_close(cat(1, dq_parts[0], dq_parts[1]), dq, kTol<T>, kTol<T>, "dq of query blocks");
  expect_close(dk_acc, dk, kTol<T>, kTol<T>, "dk over query blocks");
  expect_close(dv_acc, dv, kTol<T>, kTol<T>, "dv over query blocks");
}

TEST(AttentionBackward, AccumulatesOverBlocksF32) { backward_accumulates<float>(); }
TEST(AttentionBackward, AccumulatesOverBlocksF64) { backward_accumulates<double>(); }

}  // namespace
}  // namespace rotor
