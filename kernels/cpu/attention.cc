// CPU reference: blockwise attention forward/backward and the LSE merge
// (see kernels/attention.h for the contract and the math).
//
// Plain loops in the tensors' dtype (f32, or f64 for finite-difference tests),
// OpenMP over (batch, head, row). Every output element is written by exactly
// one loop iteration and summed in a fixed order, so results do not depend on
// the number of threads.
#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "kernels/cpu/dispatch.h"

namespace rotor {

namespace {

// Sizes of one block pair, read from q [B, Tq, Hq, D] and k [B, Tk, Hkv, D].
struct Dims {
  int64_t B, Tq, Tk, Hq, Hkv, D;
  int64_t group() const { return Hq / Hkv; }  // query heads per kv head
};

void check_i32(const Tensor& t, int64_t B, int64_t T, const char* op, const char* what) {
  check_cpu(t, what);
  ROTOR_CHECK(t.dtype() == DType::kI32) << op << ": " << what << " must be i32, got " << t.str();
  ROTOR_CHECK(t.ndim() == 2 && t.dim(0) == B && t.dim(1) == T)
      << op << ": " << what << " must be [" << B << ", " << T << "], got " << t.str();
}

// t is a float tensor of `shape` with the dtype of `ref` (q, or out_acc in the merge).
void check_float_like(const Tensor& t, const Tensor& ref, const Shape& shape, const char* op,
                      const char* what) {
  check_cpu(t, what);
  check_float(t, what);
  ROTOR_CHECK(t.dtype() == ref.dtype())
      << op << ": " << what << " must be " << dtype_name(ref.dtype()) << " like the other "
      << "float tensors, got " << t.str();
  ROTOR_CHECK(t.shape() == shape)
      << op << ": " << what << " must be " << shape.str() << ", got " << t.str();
}

// Checks q, k, v and the mask; returns the sizes.
Dims check_inputs(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionMask& mask,
                  double scale, const char* op) {
  check_cpu(q, "q");
  check_float(q, "q");
  ROTOR_CHECK(q.ndim() == 4) << op << ": q must be [B, Tq, Hq, D], got " << q.str();
  check_cpu(k, "k");
  ROTOR_CHECK(k.ndim() == 4) << op << ": k must be [B, Tk, Hkv, D], got " << k.str();
  const Dims d{q.dim(0), q.dim(1), k.dim(1), q.dim(2), k.dim(2), q.dim(3)};
  ROTOR_CHECK(k.dim(0) == d.B && k.dim(3) == d.D)
      << op << ": k must be [B=" << d.B << ", Tk, Hkv, D=" << d.D << "], got " << k.str();
  ROTOR_CHECK(d.Hkv > 0 && d.Hq % d.Hkv == 0)
      << op << ": Hq (" << d.Hq << ") must be a multiple of Hkv (" << d.Hkv << ")";
  check_float_like(k, q, k.shape(), op, "k");
  check_float_like(v, q, k.shape(), op, "v");
  check_i32(mask.q_pos, d.B, d.Tq, op, "mask.q_pos");
  check_i32(mask.k_pos, d.B, d.Tk, op, "mask.k_pos");
  ROTOR_CHECK(mask.q_seg.defined() == mask.k_seg.defined())
      << op << ": mask.q_seg and mask.k_seg must be both defined or both undefined";
  if (mask.q_seg.defined()) {
    check_i32(mask.q_seg, d.B, d.Tq, op, "mask.q_seg");
    check_i32(mask.k_seg, d.B, d.Tk, op, "mask.k_seg");
  }
  ROTOR_CHECK(std::isfinite(scale)) << op << ": scale must be finite, got " << scale;
  return d;
}

// Visibility of key j to query i in batch row b (see kernels/attention.h).
struct Visibility {
  const int32_t* q_pos;  // [B, Tq]
  const int32_t* k_pos;  // [B, Tk]
  const int32_t* q_seg;  // [B, Tq] or null
  const int32_t* k_seg;  // [B, Tk] or null
  bool causal;
  int64_t Tq, Tk;

  explicit Visibility(const AttentionMask& m, const Dims& d)
      : q_pos(m.q_pos.data<int32_t>()),
        k_pos(m.k_pos.data<int32_t>()),
        q_seg(m.q_seg.defined() ? m.q_seg.data<int32_t>() : nullptr),
        k_seg(m.k_seg.defined() ? m.k_seg.data<int32_t>() : nullptr),
        causal(m.causal),
        Tq(d.Tq),
        Tk(d.Tk) {}

  bool operator()(int64_t b, int64_t i, int64_t j) const {
    if (causal && k_pos[b * Tk + j] > q_pos[b * Tq + i]) return false;
    if (q_seg && q_seg[b * Tq + i] != k_seg[b * Tk + j]) return false;
    return true;
  }
};

template <class T>
T dot(const T* a, const T* b, int64_t n) {
  T s = 0;
  for (int64_t x = 0; x < n; ++x) s += a[x] * b[x];
  return s;
}

template <class T>
constexpr T kNegInf = -std::numeric_limits<T>::infinity();

// Below this many multiply-adds a call runs on one thread. Measured on the
// 2-core dev box with the other core busy: the attention tests (~3000 calls of
// at most 2.6e4 multiply-adds each) took 0.03 s on one thread and 0.14 to 3.5 s
// on two, all of it spent waking and spinning OpenMP teams for microseconds of
// work (OMP_WAIT_POLICY=passive also avoids it). The threshold 2^16 is a round
// number above every call in those tests, not a tuned value.
constexpr int64_t kMinParallelWork = int64_t{1} << 16;

template <class T>
void forward_impl(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionMask& mask,
                  const Dims& d, T scale, const Tensor& out, const Tensor& lse,
                  const Tensor& entropy) {
  const T* qp = q.data<T>();    // [B, Tq, Hq, D]
  const T* kp = k.data<T>();    // [B, Tk, Hkv, D]
  const T* vp = v.data<T>();    // [B, Tk, Hkv, D]
  T* op = out.data<T>();        // [B, Tq, Hq, D]
  T* lp = lse.data<T>();        // [B, Hq, Tq]
  T* ep = entropy.defined() ? entropy.data<T>() : nullptr;  // [B, Hq, Tq]
  const Visibility visible(mask, d);
  const int64_t B = d.B, Tq = d.Tq, Tk = d.Tk, Hq = d.Hq, Hkv = d.Hkv, D = d.D;
  const int64_t group = d.group();
  const bool parallel = B * Hq * Tq * Tk * D >= kMinParallelWork;

#pragma omp parallel if (parallel)
  {
    std::vector<T> s(static_cast<size_t>(Tk));  // this thread's logits of one row
#pragma omp for collapse(3) schedule(static)
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t h = 0; h < Hq; ++h) {
        for (int64_t i = 0; i < Tq; ++i) {
          const T* qi = qp + ((b * Tq + i) * Hq + h) * D;
          T* oi = op + ((b * Tq + i) * Hq + h) * D;
          const int64_t row = (b * Hq + h) * Tq + i;
          const int64_t hk = h / group;
          // Pass 1: visible scaled logits and their max.
          T m = kNegInf<T>;
          for (int64_t j = 0; j < Tk; ++j) {
            if (!visible(b, i, j)) continue;
            s[j] = scale * dot(qi, kp + ((b * Tk + j) * Hkv + hk) * D, D);
            m = std::max(m, s[j]);
          }
          std::fill(oi, oi + D, T(0));
          if (m == kNegInf<T>) {  // no visible key: the identity of attention_merge
            lp[row] = kNegInf<T>;
            if (ep) ep[row] = 0;
            continue;
          }
          // Pass 2: l = sum_j e_j with e_j = exp(s_j - m); out = sum_j e_j v_j / l.
          T l = 0, es = 0;  // es = sum_j e_j (s_j - m)
          for (int64_t j = 0; j < Tk; ++j) {
            if (!visible(b, i, j)) continue;
            const T e = std::exp(s[j] - m);
            l += e;
            es += e * (s[j] - m);
            const T* vj = vp + ((b * Tk + j) * Hkv + hk) * D;
            for (int64_t x = 0; x < D; ++x) oi[x] += e * vj[x];
          }
          for (int64_t x = 0; x < D; ++x) oi[x] /= l;
          const T log_l = std::log(l);
          lp[row] = m + log_l;
          // H = lse - sum_j p_j s_j = log l - sum_j p_j (s_j - m): relative to the
          // max, so no cancellation between two large numbers.
          if (ep) ep[row] = log_l - es / l;
        }
      }
    }
  }
}

template <class T>
void backward_impl(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionMask& mask,
                   const Dims& d, T scale, const Tensor& out, const Tensor& lse,
                   const Tensor& dout, const Tensor& dq, const Tensor& dk, const Tensor& dv) {
  const T* qp = q.data<T>();     // [B, Tq, Hq, D]
  const T* kp = k.data<T>();     // [B, Tk, Hkv, D]
  const T* vp = v.data<T>();     // [B, Tk, Hkv, D]
  const T* op = out.data<T>();   // [B, Tq, Hq, D]
  const T* lp = lse.data<T>();   // [B, Hq, Tq]
  const T* gp = dout.data<T>();  // [B, Tq, Hq, D]
  T* dqp = dq.data<T>();         // [B, Tq, Hq, D]
  T* dkp = dk.data<T>();         // [B, Tk, Hkv, D]
  T* dvp = dv.data<T>();         // [B, Tk, Hkv, D]
  const Visibility visible(mask, d);
  const int64_t B = d.B, Tq = d.Tq, Tk = d.Tk, Hq = d.Hq, Hkv = d.Hkv, D = d.D;
  const int64_t group = d.group();
  const bool parallel = B * Hq * Tq * Tk * D >= kMinParallelWork;

  // delta_i = dout_i . out_i  [B, Hq, Tq], shared by both passes.
  std::vector<T> delta(static_cast<size_t>(B * Hq * Tq));
#pragma omp parallel for collapse(3) schedule(static) if (parallel)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < Hq; ++h)
      for (int64_t i = 0; i < Tq; ++i) {
        const int64_t off = ((b * Tq + i) * Hq + h) * D;
        delta[(b * Hq + h) * Tq + i] = dot(gp + off, op + off, D);
      }

  // Pass 1, one query row per iteration: dq_i += scale sum_j ds_ij k_j.
#pragma omp parallel for collapse(3) schedule(static) if (parallel)
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < Hq; ++h) {
      for (int64_t i = 0; i < Tq; ++i) {
        const int64_t row = (b * Hq + h) * Tq + i;
        const T lse_i = lp[row];
        if (lse_i == kNegInf<T>) continue;  // no visible key anywhere: p = 0
        const int64_t off = ((b * Tq + i) * Hq + h) * D;
        const T* qi = qp + off;
        const T* gi = gp + off;
        T* dqi = dqp + off;
        const int64_t hk = h / group;
        for (int64_t j = 0; j < Tk; ++j) {
          if (!visible(b, i, j)) continue;
          const T* kj = kp + ((b * Tk + j) * Hkv + hk) * D;
          const T* vj = vp + ((b * Tk + j) * Hkv + hk) * D;
          const T p = std::exp(scale * dot(qi, kj, D) - lse_i);
          const T ds = p * (dot(gi, vj, D) - delta[row]);
          for (int64_t x = 0; x < D; ++x) dqi[x] += scale * ds * kj[x];
        }
      }
    }
  }

  // Pass 2, one key row per iteration (race-free): loops over the query heads
  // of its kv group and the query rows, recomputing p_ij from lse_i.
  //   dv_j += sum_i p_ij dout_i,   dk_j += scale sum_i ds_ij q_i
#pragma omp parallel for collapse(3) schedule(static) if (parallel)
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t hk = 0; hk < Hkv; ++hk) {
      for (int64_t j = 0; j < Tk; ++j) {
        const int64_t koff = ((b * Tk + j) * Hkv + hk) * D;
        const T* kj = kp + koff;
        const T* vj = vp + koff;
        T* dkj = dkp + koff;
        T* dvj = dvp + koff;
        for (int64_t h = hk * group; h < (hk + 1) * group; ++h) {
          for (int64_t i = 0; i < Tq; ++i) {
            const int64_t row = (b * Hq + h) * Tq + i;
            const T lse_i = lp[row];
            if (lse_i == kNegInf<T> || !visible(b, i, j)) continue;
            const int64_t off = ((b * Tq + i) * Hq + h) * D;
            const T* qi = qp + off;
            const T* gi = gp + off;
            const T p = std::exp(scale * dot(qi, kj, D) - lse_i);
            const T ds = p * (dot(gi, vj, D) - delta[row]);
            for (int64_t x = 0; x < D; ++x) {
              dvj[x] += p * gi[x];
              dkj[x] += scale * ds * qi[x];
            }
          }
        }
      }
    }
  }
}

template <class T>
void merge_impl(const Tensor& out_acc, const Tensor& lse_acc, const Tensor& entropy_acc,
                const Tensor& out_blk, const Tensor& lse_blk, const Tensor& entropy_blk) {
  const int64_t B = out_acc.dim(0), Tq = out_acc.dim(1), H = out_acc.dim(2),
                D = out_acc.dim(3);
  T* oa = out_acc.data<T>();        // [B, Tq, H, D]
  T* la = lse_acc.data<T>();        // [B, H, Tq]
  const T* ob = out_blk.data<T>();  // [B, Tq, H, D]
  const T* lb = lse_blk.data<T>();  // [B, H, Tq]
  const bool with_entropy = entropy_acc.defined() && entropy_blk.defined();
  T* ea = with_entropy ? entropy_acc.data<T>() : nullptr;        // [B, H, Tq]
  const T* eb = with_entropy ? entropy_blk.data<T>() : nullptr;  // [B, H, Tq]
  const bool parallel = B * H * Tq * D >= kMinParallelWork;

#pragma omp parallel for collapse(3) schedule(static) if (parallel)
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t i = 0; i < Tq; ++i) {
        const int64_t row = (b * H + h) * Tq + i;
        T* o1 = oa + ((b * Tq + i) * H + h) * D;
        const T* o2 = ob + ((b * Tq + i) * H + h) * D;
        const T l1 = la[row], l2 = lb[row];
        if (l2 == kNegInf<T>) {  // the block saw no key: it contributes nothing
          if (l1 == kNegInf<T>) {  // neither did the accumulator: the identity
            std::fill(o1, o1 + D, T(0));
            if (ea) ea[row] = 0;
          }
          continue;
        }
        if (l1 == kNegInf<T>) {  // the accumulator is the identity: take the block
          std::copy(o2, o2 + D, o1);
          la[row] = l2;
          if (ea) ea[row] = eb[row];
          continue;
        }
        // Both finite. With m = max, g = |l1 - l2| and c = log1p(exp(-g)):
        //   lse = m + c,  lse - l_max = c,  lse - l_min = c + g,
        //   w_b = exp(l_b - lse)  (exp(-c) and exp(-c - g), no overflow, w_max >= 1/2)
        // Entropy: lse - sum_b w_b (l_b - H_b) = sum_b w_b (H_b + (lse - l_b)) as
        // sum_b w_b = 1; the right side uses only the small differences lse - l_b,
        // so it keeps its precision when the LSEs are large (e.g. -1e30).
        const bool first_max = l1 >= l2;
        const T g = first_max ? l1 - l2 : l2 - l1;
        const T c = std::log1p(std::exp(-g));
        const T d1 = first_max ? c : c + g;  // lse - l1
        const T d2 = first_max ? c + g : c;  // lse - l2
        const T w1 = std::exp(-d1), w2 = std::exp(-d2);
        for (int64_t x = 0; x < D; ++x) o1[x] = w1 * o1[x] + w2 * o2[x];
        la[row] = (first_max ? l1 : l2) + c;
        if (ea) {
          T e = 0;  // blocks with w_b == 0 (underflow) are skipped
          if (w1 != 0) e += w1 * (ea[row] + d1);
          if (w2 != 0) e += w2 * (eb[row] + d2);
          ea[row] = e;
        }
      }
    }
  }
}

}  // namespace

void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                       const AttentionMask& mask, double scale, const Tensor& out,
                       const Tensor& lse, const Tensor& entropy) {
  const char* op = "attention_forward";
  const Dims d = check_inputs(q, k, v, mask, scale, op);
  check_float_like(out, q, q.shape(), op, "out");
  check_float_like(lse, q, Shape{d.B, d.Hq, d.Tq}, op, "lse");
  if (entropy.defined()) check_float_like(entropy, q, Shape{d.B, d.Hq, d.Tq}, op, "entropy");
  cpu::dispatch_float(q.dtype(), op, [&]<class T>() {
    forward_impl<T>(q, k, v, mask, d, static_cast<T>(scale), out, lse, entropy);
  });
}

void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v,
                        const AttentionMask& mask, double scale, const Tensor& out,
                        const Tensor& lse, const Tensor& dout, const Tensor& dq,
                        const Tensor& dk, const Tensor& dv) {
  const char* op = "attention_backward";
  const Dims d = check_inputs(q, k, v, mask, scale, op);
  check_float_like(out, q, q.shape(), op, "out");
  check_float_like(lse, q, Shape{d.B, d.Hq, d.Tq}, op, "lse");
  check_float_like(dout, q, q.shape(), op, "dout");
  check_float_like(dq, q, q.shape(), op, "dq");
  check_float_like(dk, q, k.shape(), op, "dk");
  check_float_like(dv, q, k.shape(), op, "dv");
  cpu::dispatch_float(q.dtype(), op, [&]<class T>() {
    backward_impl<T>(q, k, v, mask, d, static_cast<T>(scale), out, lse, dout, dq, dk, dv);
  });
}

void attention_merge(const Tensor& out_acc, const Tensor& lse_acc, const Tensor& entropy_acc,
                     const Tensor& out_blk, const Tensor& lse_blk, const Tensor& entropy_blk) {
  const char* op = "attention_merge";
  check_cpu(out_acc, "out_acc");
  check_float(out_acc, "out_acc");
  ROTOR_CHECK(out_acc.ndim() == 4) << op << ": out_acc must be [B, Tq, Hq, D], got "
                                   << out_acc.str();
  const Shape lse_shape{out_acc.dim(0), out_acc.dim(2), out_acc.dim(1)};
  check_float_like(lse_acc, out_acc, lse_shape, op, "lse_acc");
  check_float_like(out_blk, out_acc, out_acc.shape(), op, "out_blk");
  check_float_like(lse_blk, out_acc, lse_shape, op, "lse_blk");
  if (entropy_acc.defined()) check_float_like(entropy_acc, out_acc, lse_shape, op, "entropy_acc");
  if (entropy_blk.defined()) check_float_like(entropy_blk, out_acc, lse_shape, op, "entropy_blk");
  cpu::dispatch_float(out_acc.dtype(), op, [&]<class T>() {
    merge_impl<T>(out_acc, lse_acc, entropy_acc, out_blk, lse_blk, entropy_blk);
  });
}

}  // namespace rotor
