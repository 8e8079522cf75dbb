// CPU reference: blockwise attention forward/backward and the LSE merge
// (see kernels/attention.h for the contract and the math).
//
// Flash-style tiling on top of BLAS, in the compute dtype (f32, or f64 for
// finite-difference tests). bf16 q, k, v, out, dout, dq, dk, dv are widened to
// f32 copies, the f32 code runs, and the bf16 outputs are rounded once at the
// end; lse and entropy are in the compute dtype (f32 for bf16).
//
// For one (batch b, query head h) the query rows are cut into tiles of up to
// kTile rows; a tile against the keys [0, n) of kv head hk = h / group is
//   S = scale Q_tile K^T              [rows, n]   one gemm
//   mask, softmax row by row          (scalar loops over S, in place)
//   O_tile = P V                      [rows, D]   one gemm
// The gemms read q/k/v and write out in their strided layouts directly through
// the leading dimensions: rows of one head are Hq*D (q, out) or Hkv*D (k, v)
// elements apart. The backward recomputes S and P = exp(S - lse) per tile and
// turns the per-row formulas of the header into five gemms per tile.
//
// Key range: when the mask is causal and k_pos of the batch row is
// non-decreasing (checked once per call), keys after the last one visible to
// the tile's largest q_pos are skipped (n < Tk), and within the tile each row
// exponentiates only up to its own causal end. Otherwise n = Tk and the mask
// alone decides. Either way every visible pair is computed.
//
// Parallelism: OpenMP over (b, h, query tile) in the forward and over (b, hk)
// in the backward, so that each thread owns the dk/dv rows of its kv head and
// the dq rows of the query heads in its group (at most B * Hkv busy threads).
// The OpenMP build of OpenBLAS that rotor links runs each gemm single-threaded
// inside the parallel region; the pthread build would make concurrent gemms
// spin against each other (measured 5x slower here). Every output element is
// written by one work item with a fixed order of operations, so results do not
// depend on the number of threads.
//
// Scratch: kTile x Tk per thread in the forward (64 Tk floats: 128 KiB at
// Tk = 512, 32 MiB at Tk = 128k), twice that in the backward.
#include "kernels/attention.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "kernels/cuda/ops.h"
#include "kernels/cpu/dispatch.h"
#include "kernels/cpu/threads.h"

namespace rotor {

namespace {

// Query rows per tile: S of one tile (64 x 512 f32 = 128 KiB) stays in L2.
constexpr int64_t kTile = 64;

// Sizes of one block pair, read from q [B, Tq, Hq, D] and k [B, Tk, Hkv, D].
struct Dims {
  int64_t B, Tq, Tk, Hq, Hkv, D;
  int64_t group() const { return Hq / Hkv; }  // query heads per kv head
  int64_t tiles() const { return (Tq + kTile - 1) / kTile; }
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

// t (lse, entropy) is of `shape` in the compute dtype of `ref`'s storage.
void check_stat(const Tensor& t, const Tensor& ref, const Shape& shape, const char* op,
                const char* what) {
  check_cpu(t, what);
  check_compute_dtype(t, ref.dtype(), op, what);
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

template <class T>
constexpr T kNegInf = -std::numeric_limits<T>::infinity();

// Row-major C[m, n] = alpha op(A)[m, k] op(B)[k, n] + beta C with leading
// dimensions (in elements). k = 0 (D = 0, or no key in range) gives C = beta C
// here, as BLAS implementations differ there and reject zero leading dimensions.
template <class T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
          int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0 ? T(0) : beta * c[i * ldc + j];
    return;
  }
  const CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans;
  const CBLAS_TRANSPOSE tb = trans_b ? CblasTrans : CblasNoTrans;
  if constexpr (sizeof(T) == 4) {
    cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  } else {
    cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }
}

// The mask of one call (see kernels/attention.h) and the key range of a tile.
struct Visibility {
  const int32_t* q_pos;  // [B, Tq]
  const int32_t* k_pos;  // [B, Tk]
  const int32_t* q_seg;  // [B, Tq] or null
  const int32_t* k_seg;  // [B, Tk] or null
  bool causal;
  int64_t Tq, Tk;
  std::vector<char> k_sorted;  // [B]: k_pos of the row is non-decreasing

  Visibility(const AttentionMask& m, const Dims& d)
      : q_pos(m.q_pos.data<int32_t>()),
        k_pos(m.k_pos.data<int32_t>()),
        q_seg(m.q_seg.defined() ? m.q_seg.data<int32_t>() : nullptr),
        k_seg(m.k_seg.defined() ? m.k_seg.data<int32_t>() : nullptr),
        causal(m.causal),
        Tq(d.Tq),
        Tk(d.Tk),
        k_sorted(static_cast<size_t>(d.B)) {
    for (int64_t b = 0; b < d.B; ++b)
      k_sorted[b] = std::is_sorted(k_pos + b * Tk, k_pos + (b + 1) * Tk);
  }

  // Keys [0, n) hold every key visible to query rows [i0, i0 + rows) of batch row b.
  int64_t key_end(int64_t b, int64_t i0, int64_t rows) const {
    if (!causal || !k_sorted[b]) return Tk;
    const int32_t* qp = q_pos + b * Tq + i0;
    const int32_t last = *std::max_element(qp, qp + rows);
    const int32_t* kp = k_pos + b * Tk;
    return std::upper_bound(kp, kp + Tk, last) - kp;
  }

  // Masks row i of S (keys [0, n)) of batch row b: s[j] = -inf where key j is
  // not visible, for j < end. Returns `end`: keys [end, n) are all invisible
  // (the row's own causal end when k_pos is sorted, else n) and left as they are.
  template <class T>
  int64_t mask_row(int64_t b, int64_t i, T* s, int64_t n) const {
    const int32_t* kp = k_pos + b * Tk;
    int64_t end = n;
    if (causal) {
      const int32_t qp = q_pos[b * Tq + i];
      if (k_sorted[b]) {
        end = std::upper_bound(kp, kp + n, qp) - kp;
      } else {
        for (int64_t j = 0; j < n; ++j) s[j] = kp[j] > qp ? kNegInf<T> : s[j];
      }
    }
    if (q_seg) {
      const int32_t qs = q_seg[b * Tq + i];
      const int32_t* ks = k_seg + b * Tk;
      for (int64_t j = 0; j < end; ++j) s[j] = ks[j] != qs ? kNegInf<T> : s[j];
    }
    return end;
  }
};

// Below cpu::kMinParallelWork multiply-adds a call runs on one thread. The
// attention tests (~3000 calls of at most 2.6e4 multiply-adds each) took 0.03 s
// on one thread and 0.14 to 3.5 s on two with the other core busy (2-core dev
// box, before the tiles; 0.05 s vs 0.05 to 0.13 s after).

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
  const int64_t group = d.group(), tiles = d.tiles();
  const int64_t ldq = Hq * D, ldk = Hkv * D;  // row strides of one head
  const bool parallel = B * Hq * Tq * Tk * D >= cpu::kMinParallelWork;

#pragma omp parallel if (parallel)
  {
    std::vector<T> s_buf(static_cast<size_t>(kTile * Tk));  // this thread's S / E tile
#pragma omp for collapse(3) schedule(dynamic)
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t h = 0; h < Hq; ++h) {
        for (int64_t t = 0; t < tiles; ++t) {
          const int64_t i0 = t * kTile, rows = std::min(kTile, Tq - i0);
          const int64_t n = visible.key_end(b, i0, rows);
          const T* qt = qp + (b * Tq + i0) * ldq + h * D;  // [rows, D], ld ldq
          const T* kh = kp + b * Tk * ldk + (h / group) * D;  // [n, D], ld ldk
          const T* vh = vp + b * Tk * ldk + (h / group) * D;  // [n, D], ld ldk
          T* ot = op + (b * Tq + i0) * ldq + h * D;           // [rows, D], ld ldq
          T* lt = lp + (b * Hq + h) * Tq + i0;                // [rows]
          T* et = ep ? ep + (b * Hq + h) * Tq + i0 : nullptr;  // [rows]
          T* s = s_buf.data();                                 // [rows, n]

          gemm<T>(false, true, rows, n, D, scale, qt, ldq, kh, ldk, T(0), s, n);
          // Row by row: e_j = exp(s_j - m) with m the max visible logit (0 where
          // masked), l = sum_j e_j, lse = m + log l. Rows with no visible key
          // keep e = 0, hence out = 0, and get lse = -inf, entropy = 0.
          T inv_l[kTile];
          for (int64_t r = 0; r < rows; ++r) {
            T* sr = s + r * n;
            const int64_t end = visible.mask_row(b, i0 + r, sr, n);
            std::fill(sr + end, sr + n, T(0));
            T m = kNegInf<T>, sum = 0;
#pragma omp simd reduction(max : m) reduction(+ : sum)
            for (int64_t j = 0; j < end; ++j) {
              m = sr[j] > m ? sr[j] : m;
              sum += sr[j];
            }
            // A NaN logit must reach the output (the max above skips NaN, which
            // would turn a row of NaN logits into "no visible key": out 0):
            // sum is NaN iff a logit is NaN (or +inf meets a masked -inf).
            if (std::isnan(sum)) m = sum;
            if (m == kNegInf<T>) {
              std::fill(sr, sr + n, T(0));
              inv_l[r] = 0;
              lt[r] = kNegInf<T>;
              if (et) et[r] = 0;
              continue;
            }
            T l = 0, es = 0;  // es = sum_j e_j (s_j - m), over visible keys
            for (int64_t j = 0; j < end; ++j) {
              const T x = sr[j] - m;
              const T e = std::exp(x);  // exp(-inf) = 0 for masked keys
              sr[j] = e;
              l += e;
              if (e != 0) es += e * x;
            }
            const T log_l = std::log(l);
            inv_l[r] = 1 / l;
            lt[r] = m + log_l;
            // H = lse - sum_j p_j s_j = log l - sum_j p_j (s_j - m): relative to
            // the max, so no cancellation between two large numbers.
            if (et) et[r] = log_l - es / l;
          }
          // out = (E V) / l, row by row.
          gemm<T>(false, false, rows, D, n, T(1), s, n, vh, ldk, T(0), ot, ldq);
          for (int64_t r = 0; r < rows; ++r)
            for (int64_t x = 0; x < D; ++x) ot[r * ldq + x] *= inv_l[r];
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
  const int64_t group = d.group(), tiles = d.tiles();
  const int64_t ldq = Hq * D, ldk = Hkv * D;  // row strides of one head
  const bool parallel = B * Hq * Tq * Tk * D >= cpu::kMinParallelWork;

#pragma omp parallel if (parallel)
  {
    std::vector<T> p_buf(static_cast<size_t>(kTile * Tk));   // this thread's S, then P
    std::vector<T> ds_buf(static_cast<size_t>(kTile * Tk));  // dP, then dS
#pragma omp for collapse(2) schedule(dynamic)
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t hk = 0; hk < Hkv; ++hk) {
        const T* kh = kp + b * Tk * ldk + hk * D;  // [Tk, D], ld ldk
        const T* vh = vp + b * Tk * ldk + hk * D;
        T* dkh = dkp + b * Tk * ldk + hk * D;
        T* dvh = dvp + b * Tk * ldk + hk * D;
        for (int64_t h = hk * group; h < (hk + 1) * group; ++h) {
          for (int64_t t = 0; t < tiles; ++t) {
            const int64_t i0 = t * kTile, rows = std::min(kTile, Tq - i0);
            const int64_t n = visible.key_end(b, i0, rows);
            if (n == 0) continue;
            const int64_t off = (b * Tq + i0) * ldq + h * D;  // tile [rows, D], ld ldq
            const T* qt = qp + off;
            const T* ot = op + off;
            const T* gt = gp + off;
            T* dqt = dqp + off;
            const T* lt = lp + (b * Hq + h) * Tq + i0;  // [rows]
            T* p = p_buf.data();                       // [rows, n]
            T* ds = ds_buf.data();                     // [rows, n]

            // P = exp(S - lse), 0 where masked or in rows that saw no key at all.
            gemm<T>(false, true, rows, n, D, scale, qt, ldq, kh, ldk, T(0), p, n);
            for (int64_t r = 0; r < rows; ++r) {
              T* pr = p + r * n;
              if (lt[r] == kNegInf<T>) {
                std::fill(pr, pr + n, T(0));
                continue;
              }
              const int64_t end = visible.mask_row(b, i0 + r, pr, n);
              for (int64_t j = 0; j < end; ++j) pr[j] = std::exp(pr[j] - lt[r]);
              std::fill(pr + end, pr + n, T(0));
            }
            // dP = dO V^T, then dS = P (dP - delta) with delta_i = dout_i . out_i.
            gemm<T>(false, true, rows, n, D, T(1), gt, ldq, vh, ldk, T(0), ds, n);
            for (int64_t r = 0; r < rows; ++r) {
              T delta = 0;
              for (int64_t x = 0; x < D; ++x) delta += gt[r * ldq + x] * ot[r * ldq + x];
              const T* pr = p + r * n;
              T* dsr = ds + r * n;
              for (int64_t j = 0; j < n; ++j) dsr[j] = pr[j] * (dsr[j] - delta);
            }
            // dQ += scale dS K,  dK += scale dS^T Q,  dV += P^T dO.
            gemm<T>(false, false, rows, D, n, scale, ds, n, kh, ldk, T(1), dqt, ldq);
            gemm<T>(true, false, n, D, rows, scale, ds, n, qt, ldq, T(1), dkh, ldk);
            gemm<T>(true, false, n, D, rows, T(1), p, n, gt, ldq, T(1), dvh, ldk);
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
  const bool parallel = B * H * Tq * D >= cpu::kMinParallelWork;

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
  ROTOR_ON_GPU(q, cuda::attention_forward(q, k, v, mask, scale, out, lse, entropy));
  const char* op = "attention_forward";
  const Dims d = check_inputs(q, k, v, mask, scale, op);
  check_float_like(out, q, q.shape(), op, "out");
  check_stat(lse, q, Shape{d.B, d.Hq, d.Tq}, op, "lse");
  if (entropy.defined()) check_stat(entropy, q, Shape{d.B, d.Hq, d.Tq}, op, "entropy");
  const Tensor outw = cpu::wide_output(out);
  cpu::dispatch_float(compute_dtype(q.dtype()), op, [&]<class T>() {
    forward_impl<T>(cpu::widen(q), cpu::widen(k), cpu::widen(v), mask, d, static_cast<T>(scale),
                    outw, lse, entropy);
  });
  cpu::narrow_into(outw, out);
}

void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v,
                        const AttentionMask& mask, double scale, const Tensor& out,
                        const Tensor& lse, const Tensor& dout, const Tensor& dq,
                        const Tensor& dk, const Tensor& dv) {
  ROTOR_ON_GPU(q, cuda::attention_backward(q, k, v, mask, scale, out, lse, dout, dq, dk, dv));
  const char* op = "attention_backward";
  const Dims d = check_inputs(q, k, v, mask, scale, op);
  check_float_like(out, q, q.shape(), op, "out");
  check_stat(lse, q, Shape{d.B, d.Hq, d.Tq}, op, "lse");
  check_float_like(dout, q, q.shape(), op, "dout");
  check_float_like(dq, q, q.shape(), op, "dq");
  check_float_like(dk, q, k.shape(), op, "dk");
  check_float_like(dv, q, k.shape(), op, "dv");
  // dq, dk, dv accumulate (+=): their f32 copies start from the stored values.
  const Tensor dqw = cpu::widen(dq), dkw = cpu::widen(dk), dvw = cpu::widen(dv);
  cpu::dispatch_float(compute_dtype(q.dtype()), op, [&]<class T>() {
    backward_impl<T>(cpu::widen(q), cpu::widen(k), cpu::widen(v), mask, d, static_cast<T>(scale),
                     cpu::widen(out), lse, cpu::widen(dout), dqw, dkw, dvw);
  });
  cpu::narrow_into(dqw, dq);
  cpu::narrow_into(dkw, dk);
  cpu::narrow_into(dvw, dv);
}

void attention_merge(const Tensor& out_acc, const Tensor& lse_acc, const Tensor& entropy_acc,
                     const Tensor& out_blk, const Tensor& lse_blk, const Tensor& entropy_blk) {
  ROTOR_ON_GPU(out_acc, cuda::attention_merge(out_acc, lse_acc, entropy_acc, out_blk, lse_blk, entropy_blk));
  const char* op = "attention_merge";
  check_cpu(out_acc, "out_acc");
  check_float(out_acc, "out_acc");
  ROTOR_CHECK(out_acc.ndim() == 4) << op << ": out_acc must be [B, Tq, Hq, D], got "
                                   << out_acc.str();
  const Shape lse_shape{out_acc.dim(0), out_acc.dim(2), out_acc.dim(1)};
  check_stat(lse_acc, out_acc, lse_shape, op, "lse_acc");
  check_float_like(out_blk, out_acc, out_acc.shape(), op, "out_blk");
  check_stat(lse_blk, out_acc, lse_shape, op, "lse_blk");
  if (entropy_acc.defined()) check_stat(entropy_acc, out_acc, lse_shape, op, "entropy_acc");
  if (entropy_blk.defined()) check_stat(entropy_blk, out_acc, lse_shape, op, "entropy_blk");
  const Tensor accw = cpu::widen(out_acc);  // updated in place: starts from the stored values
  cpu::dispatch_float(compute_dtype(out_acc.dtype()), op, [&]<class T>() {
    merge_impl<T>(accw, lse_acc, entropy_acc, cpu::widen(out_blk), lse_blk, entropy_blk);
  });
  cpu::narrow_into(accw, out_acc);
}

}  // namespace rotor
