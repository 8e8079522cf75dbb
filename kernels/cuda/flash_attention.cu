// Flash attention for bf16, head dim 64 / 128 (declarations and semantics:
// kernels/cuda/flash_attention.h, kernels/attention.h). Portable sm_80 path:
// bf16 tensor-core MMA through nvcuda::wmma (16x16x16, f32 accumulators),
// tiles staged in shared memory, f32 online softmax. (Hopper wgmma/TMA later.)
//
// Notation: one CTA works on a query tile of kBM rows and key tiles of kBN
// keys; s_ij = scale * q_i . k_j (f32), visible(i, j) as kernels/attention.h:
//   (!causal || k_pos[j] <= q_pos[i]) && (no segments || q_seg[i] == k_seg[j]).
// Tiles are skipped whole when the position / segment ranges of the two tiles
// exclude every pair (causal: min k_pos of the key tile > max q_pos of the
// query tile; segments: disjoint [min, max] ranges); otherwise the mask is
// applied per element, so arbitrary (non-monotonic, zigzag, shifted)
// positions are exact.
//
// ---- forward: flash_fwd_kernel<D> ---------------------------------------
// grid (ceil(Tq / kBM), Hq, B), kThreads = 128 (4 warps); the query tiles run
// in reverse order (later causal tiles see more keys: longest first).
// Warp w owns query rows [16 w, 16 w + 16) of the tile for the whole kernel,
// so between its phases only __syncwarp is needed; K/V tiles are shared.
// Per key tile: positions (skip test), K (plain loads), V (cp.async, waited
// for just before P V, so its latency hides behind Q K^T and the softmax).
// Per row i the warp keeps (registers of the row's two lanes, below):
//   m_i  running max of the visible s_ij (-inf before any)
//   l_i  = sum_j exp(s_ij - m_i)
//   u_i  = sum_j exp(s_ij - m_i) (s_ij - m_i)        (for the entropy)
//   O_i  = sum_j exp(s_ij - m_i) v_j                 (shared, f32)
// A new key tile with tile max m' = max(m, max_j s_ij) rescales by
// alpha = exp(m - m'):
//   l' = alpha l + sum_j p_j,                         p_j = exp(s_ij - m')
//   u' = alpha (u + (m - m') l) + sum_j p_j (s_ij - m')
//        [exp(s-m') (s-m') = alpha exp(s-m) ((s-m) + (m-m'))]
//   O' = alpha O + P V       (P rounded to bf16 for the MMA, as FA2)
// End: out_i = O_i / l_i, lse_i = m_i + ln l_i,
//      H_i = -sum p ln p = ln l_i - u_i / l_i      (as the CPU reference).
// A row with no visible key (l = 0): out 0, lse -inf, entropy 0.
//
// ---- backward ---------------------------------------------------------------
// 1. flash_bwd_prep_kernel: one warp per query row (b, i, h):
//      delta_i = dout_i . out_i (f32) -> scratch delta [B, Hq, Tq];
//      dq_acc row (f32 [B, Tq, Hq, D] in scratch) = 0.
// 2. flash_bwd_kernel<D>: grid (ceil(Tk / kBN), Hkv, B), 128 threads.
//    The CTA owns a key tile of one kv head and loops over every query tile
//    and over the G = Hq / Hkv query heads of the GQA group, recomputing
//      P = exp(S - lse)              (masked / lse = -inf rows: 0)
//      dP = dO V^T,  dS = P * (dP - delta)
//      dV += P^T dO,  dK += dS^T Q   (wmma accumulators in registers, f32,
//                                      warp w owns keys [16 w, 16 w + 16))
//      dQ_tile = dS K               (warp w: query rows [16 w, 16 w + 16))
//    dQ: scale * dQ_tile added to dq_acc with f32 atomicAdd (several key
//    tiles contribute to one query row; summation order varies run to run
//    in the last f32 bit). dK, dV: no atomics, one CTA per key tile; at the
//    end dk += scale * dK, dv += dV, rounded to bf16 once.
// 3. flash_bwd_dq_finish_kernel: dq += dq_acc, rounded to bf16 once.
//
// Shared memory (bytes; ld = padded row length in elements, the pads of 8
// bf16 / 4 f32 shift rows by 16 bytes to spread banks and keep every wmma
// pointer 32-byte aligned):
//   forward   Q, K, V   3 x kBM x (D + 8) x 2     D=64: 27648   D=128: 52224
//             S f32     kBM x (kBN + 4) x 4             17408          17408
//             P bf16    kBM x (kBN + 8) x 2              9216           9216
//             O f32     kBM x (D + 4) x 4               17408          33792
//             pos/seg   4 x 64 x 4                       1024           1024
//             total                                     72704         113664
//   backward  K, V, Q, dO  4 x 64 x (D + 8) x 2         36864          69632
//             S f32     64 x (kBN + 4) x 4              17408          17408
//             C f32 (dP, then the dQ tile) 64 x (D + 4) x 4  17408     33792
//             P, dS bf16   2 x 64 x (kBN + 8) x 2       18432          18432
//             lse, delta, pos/seg  6 x 64 x 4            1536           1536
//             total                                     91648         140800
// Both fit sm_80's 163 KiB (227 KiB on sm_90) with the dynamic shared memory
// opt-in; one or two CTAs per SM.
#include <mma.h>

#include <climits>
#include <type_traits>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/flash_attention.h"

namespace rotor::cuda {

namespace {

namespace wmma = nvcuda::wmma;

constexpr int kBM = 64;        // query rows per tile
constexpr int kBN = 64;        // keys per tile
constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kWm = 16;        // wmma tile edge (m = n = k = 16)
constexpr int kLdS = kBN + 4;  // f32 S rows
constexpr int kLdP = kBN + 8;  // bf16 P / dS rows
static_assert(kBM == kWarps * kWm, "each warp owns 16 query rows of the tile");
static_assert(kBN == kWarps * kWm, "backward: each warp owns 16 keys of the tile");
static_assert(kBM == 64 && kBN == 64, "tile_range and the softmax lanes cover 2 x 32 columns");
static_assert(kLdS % 4 == 0 && kLdP % 8 == 0, "wmma ldm: 16 bytes");
static_assert((16 * kLdS * 4) % 32 == 0 && (16 * kLdP * 2) % 32 == 0, "wmma pointers 32-byte aligned");

template <int D>
struct Dims {
  static_assert(D == 64 || D == 128, "flash attention: head dim 64 or 128");
  static constexpr int kLdH = D + 8;  // bf16 Q/K/V/dO rows
  static constexpr int kLdO = D + 4;  // f32 O / dQ rows
  static constexpr int kVecRow = D / 8;  // 16-byte vectors per global row
  static_assert((16 * kLdH * 2) % 32 == 0 && (16 * kLdO * 4) % 32 == 0, "wmma pointers");
  static_assert(kLdO >= kLdS, "the backward C buffer holds dP [64, kLdS] before the dQ tile");
  // Forward shared memory, in order: Q, K, V (bf16), S (f32), P (bf16), O (f32), 4 x 64 i32.
  static constexpr size_t kFwdBytes = 3 * static_cast<size_t>(kBM) * kLdH * 2 +
                                      static_cast<size_t>(kBM) * kLdS * 4 +
                                      static_cast<size_t>(kBM) * kLdP * 2 +
                                      static_cast<size_t>(kBM) * kLdO * 4 + 4 * 64 * 4;
  // Backward: K, V, Q, dO (bf16), S (f32), C (f32), P, dS (bf16), 6 x 64 f32/i32.
  static constexpr size_t kBwdBytes = 4 * static_cast<size_t>(kBM) * kLdH * 2 +
                                      static_cast<size_t>(kBM) * kLdS * 4 +
                                      static_cast<size_t>(kBM) * kLdO * 4 +
                                      2 * static_cast<size_t>(kBM) * kLdP * 2 + 6 * 64 * 4;
  static_assert(kFwdBytes <= 163 * 1024 && kBwdBytes <= 163 * 1024, "sm_80 shared memory");
};
static_assert(Dims<64>::kFwdBytes == 72704 && Dims<128>::kFwdBytes == 113664, "budget above");
static_assert(Dims<64>::kBwdBytes == 91648 && Dims<128>::kBwdBytes == 140800, "budget above");

struct Params {
  const bf16_t* q;  // [B, Tq, Hq, D]
  const bf16_t* k;  // [B, Tk, Hkv, D]
  const bf16_t* v;  // [B, Tk, Hkv, D]
  const int32_t* q_pos;  // [B, Tq]
  const int32_t* k_pos;  // [B, Tk]
  const int32_t* q_seg;  // [B, Tq] or null
  const int32_t* k_seg;  // [B, Tk] or null
  const bf16_t* out;     // backward input
  bf16_t* out_w;         // forward output [B, Tq, Hq, D]
  float* lse;            // [B, Hq, Tq] f32
  float* entropy;        // [B, Hq, Tq] f32 or null
  const bf16_t* dout;    // [B, Tq, Hq, D]
  bf16_t* dq;            // [B, Tq, Hq, D]
  bf16_t* dk;            // [B, Tk, Hkv, D]
  bf16_t* dv;            // [B, Tk, Hkv, D]
  float* dq_acc;         // [B, Tq, Hq, D] f32 scratch
  float* delta;          // [B, Hq, Tq] f32 scratch
  int64_t b, tq, tk, hq, hkv;
  float scale;
  bool causal;
};

// Copies `rows` token rows (kRows at most; rows past n are zero) of one head
// from global memory into a shared tile [kRows, D + 8]. base points at token 0
// of this (batch, head); consecutive tokens are ld_g elements apart (H * D).
template <int D, int kRows>
__device__ __forceinline__ void load_rows(bf16_t* dst, const bf16_t* base, int64_t ld_g, int64_t r0,
                                          int64_t n) {
  constexpr int kVecRow = Dims<D>::kVecRow;
  for (int idx = threadIdx.x; idx < kRows * kVecRow; idx += kThreads) {
    const int r = idx / kVecRow, c = (idx % kVecRow) * 8;
    int4 val = make_int4(0, 0, 0, 0);
    if (r0 + r < n) val = *reinterpret_cast<const int4*>(base + (r0 + r) * ld_g + c);
    *reinterpret_cast<int4*>(dst + r * Dims<D>::kLdH + c) = val;
  }
}

// As load_rows, asynchronously (cp.async, 16 bytes a copy, rows past n
// zero-filled: src-size 0 reads nothing). Completed by cp_async_wait_all()
// followed by a __syncthreads.
template <int D, int kRows>
__device__ __forceinline__ void load_rows_async(bf16_t* dst, const bf16_t* base, int64_t ld_g,
                                                int64_t r0, int64_t n) {
  constexpr int kVecRow = Dims<D>::kVecRow;
  for (int idx = threadIdx.x; idx < kRows * kVecRow; idx += kThreads) {
    const int r = idx / kVecRow, c = (idx % kVecRow) * 8;
    const bool ok = r0 + r < n;
    const bf16_t* src = ok ? base + (r0 + r) * ld_g + c : base;  // any valid address when !ok
    const unsigned dst_s = static_cast<unsigned>(__cvta_generic_to_shared(dst + r * Dims<D>::kLdH + c));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst_s), "l"(src),
                 "r"(ok ? 16 : 0)
                 : "memory");
  }
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
__device__ __forceinline__ void cp_async_wait_all() {
  asm volatile("cp.async.wait_group 0;\n" ::: "memory");
}

// Position and segment ranges of the first n (<= 64) entries of a tile.
struct Range {
  int pmin, pmax, smin, smax;
};
// Called by whole warps; every lane (and every warp: same shared inputs) gets
// the same result.
__device__ __forceinline__ Range tile_range(const int* pos, const int* seg, int n) {
  const int lane = threadIdx.x % 32;
  int pmin = INT_MAX, pmax = INT_MIN, smin = INT_MAX, smax = INT_MIN;
#pragma unroll
  for (int e = 0; e < 2; ++e) {
    const int c = lane + 32 * e;
    if (c < n) {
      pmin = min(pmin, pos[c]);
      pmax = max(pmax, pos[c]);
      smin = min(smin, seg[c]);
      smax = max(smax, seg[c]);
    }
  }
  return Range{__reduce_min_sync(0xffffffffu, pmin), __reduce_max_sync(0xffffffffu, pmax),
               __reduce_min_sync(0xffffffffu, smin), __reduce_max_sync(0xffffffffu, smax)};
}

// No pair of the two tiles is visible.
__device__ __forceinline__ bool tiles_disjoint(const Range& q, const Range& k, bool causal,
                                               bool seg) {
  if (causal && k.pmin > q.pmax) return true;
  if (seg && (k.smax < q.smin || k.smin > q.smax)) return true;
  return false;
}

// Loads the positions (and segments, 0 without) of tile rows [r0, r0 + 64)
// of batch row bb into shared memory; rows past n get INT_MAX / 0 (never read
// as valid: every use checks the row count).
__device__ __forceinline__ void load_pos(int* pos_s, int* seg_s, const int32_t* pos,
                                         const int32_t* seg, int64_t bb, int64_t n, int64_t r0) {
  for (int r = threadIdx.x; r < 64; r += kThreads) {
    const int64_t t = r0 + r;
    const bool ok = t < n;
    pos_s[r] = ok ? pos[bb * n + t] : INT_MAX;
    seg_s[r] = ok && seg != nullptr ? seg[bb * n + t] : 0;
  }
}

using FragA = wmma::fragment<wmma::matrix_a, kWm, kWm, kWm, bf16_t, wmma::row_major>;
using FragAt = wmma::fragment<wmma::matrix_a, kWm, kWm, kWm, bf16_t, wmma::col_major>;
using FragB = wmma::fragment<wmma::matrix_b, kWm, kWm, kWm, bf16_t, wmma::row_major>;
using FragBt = wmma::fragment<wmma::matrix_b, kWm, kWm, kWm, bf16_t, wmma::col_major>;
using FragC = wmma::fragment<wmma::accumulator, kWm, kWm, kWm, float>;

// C[16, 64] (f32, ld ldc) = A[16, D] B^T where A rows (bf16, ld lda) and B
// rows [64, D] (bf16, ld ldb) are token-major: S = Q K^T or dP = dO V^T.
template <int D>
__device__ __forceinline__ void mma_abt_16x64(const bf16_t* a, int lda, const bf16_t* b, int ldb,
                                              float* c, int ldc) {
#pragma unroll
  for (int n = 0; n < kBN / kWm; ++n) {
    FragC acc;
    wmma::fill_fragment(acc, 0.0f);
#pragma unroll
    for (int kk = 0; kk < D / kWm; ++kk) {
      FragA fa;
      FragBt fb;  // B^T[k][n] = b[n][k]: col-major view of b
      wmma::load_matrix_sync(fa, a + kk * kWm, lda);
      wmma::load_matrix_sync(fb, b + n * kWm * ldb + kk * kWm, ldb);
      wmma::mma_sync(acc, fa, fb, acc);
    }
    wmma::store_matrix_sync(c + n * kWm, acc, ldc, wmma::mem_row_major);
  }
}

// ---- forward -------------------------------------------------------------------
// q [B, Tq, Hq, D], k, v [B, Tk, Hkv, D] -> out [B, Tq, Hq, D], lse / entropy [B, Hq, Tq].
template <int D>
__global__ void __launch_bounds__(kThreads) flash_fwd_kernel(Params p) {
  using Dm = Dims<D>;
  constexpr int kLdH = Dm::kLdH, kLdO = Dm::kLdO;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16_t* q_s = reinterpret_cast<bf16_t*>(smem);  // [kBM, kLdH]
  bf16_t* k_s = q_s + kBM * kLdH;                  // [kBN, kLdH]
  bf16_t* v_s = k_s + kBN * kLdH;                  // [kBN, kLdH]
  float* s_s = reinterpret_cast<float*>(v_s + kBN * kLdH);  // [kBM, kLdS]
  bf16_t* p_s = reinterpret_cast<bf16_t*>(s_s + kBM * kLdS);  // [kBM, kLdP]
  float* o_s = reinterpret_cast<float*>(p_s + kBM * kLdP);   // [kBM, kLdO]
  int* qpos_s = reinterpret_cast<int*>(o_s + kBM * kLdO);    // [64] x 4
  int* qseg_s = qpos_s + 64;
  int* kpos_s = qseg_s + 64;
  int* kseg_s = kpos_s + 64;

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int r0 = warp * kWm;  // this warp's rows of the tile
  const int64_t tile = static_cast<int64_t>(gridDim.x) - 1 - blockIdx.x;
  const int64_t h = blockIdx.y, bb = blockIdx.z;
  const int64_t hk = h / (p.hq / p.hkv);
  const int64_t i0 = tile * kBM;
  const int nq = static_cast<int>(min(static_cast<int64_t>(kBM), p.tq - i0));
  const bool seg = p.q_seg != nullptr;
  const int64_t ldq = p.hq * D, ldk = p.hkv * D;  // elements between tokens
  const bf16_t* qb = p.q + bb * p.tq * ldq + h * D;
  const bf16_t* kb = p.k + bb * p.tk * ldk + hk * D;
  const bf16_t* vb = p.v + bb * p.tk * ldk + hk * D;

  load_pos(qpos_s, qseg_s, p.q_pos, p.q_seg, bb, p.tq, i0);
  load_rows<D, kBM>(q_s, qb, ldq, i0, p.tq);
  for (int x = threadIdx.x; x < kBM * kLdO; x += kThreads) o_s[x] = 0.0f;
  __syncthreads();
  const Range qr = tile_range(qpos_s, qseg_s, nq);

  // Softmax ownership: lane pair (2 r, 2 r + 1) owns row r0 + r of the tile;
  // the lane with col_half = lane & 1 its columns [32 col_half, 32 col_half + 32)
  // of S / P and its elements [col_half D / 2, (col_half + 1) D / 2) of O. The pair's two lanes hold
  // the same (m, l, u) of the row (see the header). Columns / elements are
  // visited in an order rotated by `rot` so that the 32 lanes touch 32
  // different banks: bank = 4 (r % 8) + rot + ... with rot = (lane & 1) +
  // 2 (lane >> 4) makes 4 (r % 8) + rot distinct over the warp.
  const int my_row = r0 + (lane >> 1), col_half = lane & 1;
  const int rot = (lane & 1) + 2 * (lane >> 4);
  const bool row_valid = my_row < nq;
  const int my_qpos = qpos_s[my_row], my_qseg = qseg_s[my_row];
  float m_i = -INFINITY, l_i = 0.0f, u_i = 0.0f;

  for (int64_t j0 = 0; j0 < p.tk; j0 += kBN) {
    const int nk = static_cast<int>(min(static_cast<int64_t>(kBN), p.tk - j0));
    __syncthreads();  // the previous key tile (k_s, v_s, kpos_s) is consumed
    load_pos(kpos_s, kseg_s, p.k_pos, p.k_seg, bb, p.tk, j0);
    __syncthreads();
    if (tiles_disjoint(qr, tile_range(kpos_s, kseg_s, nk), p.causal, seg)) continue;  // uniform
    load_rows<D, kBN>(k_s, kb, ldk, j0, p.tk);
    load_rows_async<D, kBN>(v_s, vb, ldk, j0, p.tk);  // V lands while S and the softmax run
    __syncthreads();

    // S[r0 : r0 + 16, 0 : 64] = Q K^T (unscaled, f32).
    mma_abt_16x64<D>(q_s + r0 * kLdH, kLdH, k_s, kLdH, s_s + r0 * kLdS, kLdS);
    __syncwarp();

    // Online softmax of the pair's row (s_s: this warp's rows only).
    {
      // Scaled logit of column c of my row, -inf where not visible.
      auto logit = [&](int c) {
        const bool vis = row_valid && c < nk && (!p.causal || kpos_s[c] <= my_qpos) &&
                         (!seg || kseg_s[c] == my_qseg);
        return vis ? p.scale * s_s[my_row * kLdS + c] : -INFINITY;
      };
      float mt = -INFINITY;
#pragma unroll 8
      for (int cc = 0; cc < 32; ++cc) mt = nan_max(mt, logit(32 * col_half + ((cc + rot) & 31)));
      mt = nan_max(mt, __shfl_xor_sync(0xffffffffu, mt, 1));
      const float m_old = m_i, m_new = nan_max(m_old, mt);
      float alpha = 1.0f, ps = 0.0f, us = 0.0f;
      if (m_new != -INFINITY) {  // same in both lanes of the pair
        alpha = expf(m_old - m_new);  // m_old = -inf: 0
#pragma unroll 8
        for (int cc = 0; cc < 32; ++cc) {
          const int c = 32 * col_half + ((cc + rot) & 31);
          const float sv = logit(c);
          const float e = expf(sv - m_new);  // masked: exp(-inf) = 0
          ps += e;
          if (e != 0.0f) us += e * (sv - m_new);
          p_s[my_row * kLdP + c] = __float2bfloat16_rn(e);
        }
      } else {
#pragma unroll 8
        for (int cc = 0; cc < 32; ++cc)
          p_s[my_row * kLdP + 32 * col_half + ((cc + rot) & 31)] = __float2bfloat16_rn(0.0f);
      }
      ps += __shfl_xor_sync(0xffffffffu, ps, 1);
      us += __shfl_xor_sync(0xffffffffu, us, 1);
      // u' = alpha (u + (m - m') l) + us; l = 0 means no key so far (m = -inf).
      u_i = l_i > 0.0f ? alpha * (u_i + (m_old - m_new) * l_i) + us : us;
      l_i = alpha * l_i + ps;
      m_i = m_new;
      if (alpha != 1.0f) {
        constexpr int kHalfD = D / 2;
        static_assert(kHalfD % 32 == 0, "rotation within a half row");
#pragma unroll 8
        for (int x = 0; x < kHalfD; ++x)
          o_s[my_row * kLdO + col_half * kHalfD + ((x + rot) & (kHalfD - 1))] *= alpha;
      }
    }
    cp_async_wait_all();  // this thread's V copies ...
    __syncthreads();      // ... and everyone's (also orders the warp's P / O writes)

    // O[r0 : r0 + 16, :] += P V.
#pragma unroll
    for (int n = 0; n < D / kWm; ++n) {
      FragC acc;
      wmma::load_matrix_sync(acc, o_s + r0 * kLdO + n * kWm, kLdO, wmma::mem_row_major);
#pragma unroll
      for (int kk = 0; kk < kBN / kWm; ++kk) {
        FragA fa;
        FragB fb;
        wmma::load_matrix_sync(fa, p_s + r0 * kLdP + kk * kWm, kLdP);
        wmma::load_matrix_sync(fb, v_s + kk * kWm * kLdH + n * kWm, kLdH);
        wmma::mma_sync(acc, fa, fb, acc);
      }
      wmma::store_matrix_sync(o_s + r0 * kLdO + n * kWm, acc, kLdO, wmma::mem_row_major);
    }
    __syncwarp();
  }
  __syncwarp();

  // out = O / l, lse = m + ln l, entropy = ln l - u / l; no key: 0, -inf, 0.
  // The pair writes its row: each lane half of it, 8 bf16 (16 bytes) a store.
  if (row_valid) {
    const int64_t i = i0 + my_row;
    const float inv_l = l_i > 0.0f ? 1.0f / l_i : 0.0f;
    bf16_t* orow = p.out_w + (bb * p.tq + i) * ldq + h * D;
    const float* srow = o_s + my_row * kLdO;
#pragma unroll
    for (int x = col_half * (D / 2); x < (col_half + 1) * (D / 2); x += 8) {
      Pack<bf16_t, 8> pk;
#pragma unroll
      for (int e = 0; e < 8; ++e) pk.v[e] = __float2bfloat16_rn(srow[x + e] * inv_l);
      store_pack(orow + x, pk);
    }
    if (col_half == 0) {
      const int64_t si = (bb * p.hq + h) * p.tq + i;
      const float log_l = l_i > 0.0f ? logf(l_i) : 0.0f;
      p.lse[si] = l_i > 0.0f ? m_i + log_l : -INFINITY;
      if (p.entropy != nullptr) p.entropy[si] = l_i > 0.0f ? log_l - u_i / l_i : 0.0f;
    }
  }
}

// ---- backward -------------------------------------------------------------------
// dout, out [B, Tq, Hq, D] -> delta [B, Hq, Tq] (f32); dq_acc [B, Tq, Hq, D] = 0.
// One warp per (b, i, h) row; lane takes element pairs 2 lane + 64 t.
template <int D>
__global__ void __launch_bounds__(256) flash_bwd_prep_kernel(Params p) {
  const int64_t rows = p.b * p.tq * p.hq;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * 8 + threadIdx.x / 32;  // (b * Tq + i) * Hq + h
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  const int64_t h = row % p.hq, i = (row / p.hq) % p.tq, bb = row / (p.hq * p.tq);
  const bf16_t* o = p.out + row * D;
  const bf16_t* g = p.dout + row * D;
  float* acc = p.dq_acc + row * D;
  float s = 0.0f;
#pragma unroll
  for (int x = 2 * lane; x < D; x += 64) {
    const float2 o2 = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(o + x));
    const float2 g2 = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(g + x));
    s += o2.x * g2.x + o2.y * g2.y;
    *reinterpret_cast<float2*>(acc + x) = make_float2(0.0f, 0.0f);
  }
  s = warp_sum(s);
  if (lane == 0) p.delta[(bb * p.hq + h) * p.tq + i] = s;
}

// out[key, :] += mult * acc[key, :] for the warp's 16 keys [r0, r0 + 16)
// below nk, staged through the warp's own rows of c_s [64, kLdO]; out row
// `key` starts at out + key * key_stride (bf16, rounded once per add).
template <int D, int kNd>
__device__ void add_key_rows(float* c_s, FragC (&acc)[kNd], bf16_t* out, int64_t key_stride, int r0,
                             int nk, float mult) {
  constexpr int kLdO = Dims<D>::kLdO;
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int n = 0; n < kNd; ++n)
    wmma::store_matrix_sync(c_s + r0 * kLdO + n * kWm, acc[n], kLdO, wmma::mem_row_major);
  __syncwarp();
  for (int r = 0; r < kWm; ++r) {
    const int key = r0 + r;
    if (key >= nk) break;
    bf16_t* dst = out + key * key_stride;
#pragma unroll
    for (int x = lane; x < D; x += 32)
      dst[x] = __float2bfloat16_rn(__bfloat162float(dst[x]) + mult * c_s[key * kLdO + x]);
  }
  __syncwarp();
}

// q, dout [B, Tq, Hq, D], k, v [B, Tk, Hkv, D], lse [B, Hq, Tq] (f32), delta
// -> dk, dv (+=) [B, Tk, Hkv, D]; dq_acc (+= atomically) [B, Tq, Hq, D] f32.
template <int D>
__global__ void __launch_bounds__(kThreads) flash_bwd_kernel(Params p) {
  using Dm = Dims<D>;
  constexpr int kLdH = Dm::kLdH, kLdO = Dm::kLdO;
  constexpr int kNd = D / kWm;  // accumulator fragments per 16 rows
  extern __shared__ __align__(128) unsigned char smem[];
  bf16_t* k_s = reinterpret_cast<bf16_t*>(smem);  // [kBN, kLdH]
  bf16_t* v_s = k_s + kBN * kLdH;                  // [kBN, kLdH]
  bf16_t* q_s = v_s + kBN * kLdH;                  // [kBM, kLdH]
  bf16_t* do_s = q_s + kBM * kLdH;                 // [kBM, kLdH]
  float* s_s = reinterpret_cast<float*>(do_s + kBM * kLdH);  // [kBM, kLdS]
  float* c_s = s_s + kBM * kLdS;  // dP [kBM, kLdS], then dQ tile / final dK, dV [64, kLdO]
  bf16_t* p_s = reinterpret_cast<bf16_t*>(c_s + kBM * kLdO);  // [kBM, kLdP]
  bf16_t* ds_s = p_s + kBM * kLdP;                             // [kBM, kLdP]
  float* lse_s = reinterpret_cast<float*>(ds_s + kBM * kLdP);  // [64]
  float* delta_s = lse_s + 64;                                 // [64]
  int* qpos_s = reinterpret_cast<int*>(delta_s + 64);
  int* qseg_s = qpos_s + 64;
  int* kpos_s = qseg_s + 64;
  int* kseg_s = kpos_s + 64;

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int r0 = warp * kWm;  // this warp's query rows (S, dS, dQ) and keys (dK, dV)
  const int64_t hk = blockIdx.y, bb = blockIdx.z;
  const int64_t group = p.hq / p.hkv;
  const int64_t j0 = static_cast<int64_t>(blockIdx.x) * kBN;
  const int nk = static_cast<int>(min(static_cast<int64_t>(kBN), p.tk - j0));
  const bool seg = p.q_seg != nullptr;
  const int64_t ldq = p.hq * D, ldk = p.hkv * D;
  const bf16_t* kb = p.k + bb * p.tk * ldk + hk * D;
  const bf16_t* vb = p.v + bb * p.tk * ldk + hk * D;

  load_pos(kpos_s, kseg_s, p.k_pos, p.k_seg, bb, p.tk, j0);
  load_rows<D, kBN>(k_s, kb, ldk, j0, p.tk);
  load_rows<D, kBN>(v_s, vb, ldk, j0, p.tk);
  __syncthreads();
  const Range kr = tile_range(kpos_s, kseg_s, nk);

  FragC dk_acc[kNd], dv_acc[kNd];  // keys [r0, r0 + 16) x D
#pragma unroll
  for (int n = 0; n < kNd; ++n) {
    wmma::fill_fragment(dk_acc[n], 0.0f);
    wmma::fill_fragment(dv_acc[n], 0.0f);
  }

  for (int64_t i0 = 0; i0 < p.tq; i0 += kBM) {
    const int nq = static_cast<int>(min(static_cast<int64_t>(kBM), p.tq - i0));
    __syncthreads();  // qpos_s of the previous tile is consumed
    load_pos(qpos_s, qseg_s, p.q_pos, p.q_seg, bb, p.tq, i0);
    __syncthreads();
    if (tiles_disjoint(tile_range(qpos_s, qseg_s, nq), kr, p.causal, seg)) continue;  // uniform
    for (int64_t g = 0; g < group; ++g) {
      const int64_t h = hk * group + g;
      __syncthreads();  // the previous head's q_s, do_s, p_s, ds_s, c_s are consumed
      load_rows<D, kBM>(q_s, p.q + bb * p.tq * ldq + h * D, ldq, i0, p.tq);
      load_rows<D, kBM>(do_s, p.dout + bb * p.tq * ldq + h * D, ldq, i0, p.tq);
      for (int r = threadIdx.x; r < kBM; r += kThreads) {
        const int64_t si = (bb * p.hq + h) * p.tq + i0 + r;
        lse_s[r] = r < nq ? p.lse[si] : -INFINITY;
        delta_s[r] = r < nq ? p.delta[si] : 0.0f;
      }
      __syncthreads();

      // S = Q K^T, dP = dO V^T for the warp's 16 query rows (f32).
      mma_abt_16x64<D>(q_s + r0 * kLdH, kLdH, k_s, kLdH, s_s + r0 * kLdS, kLdS);
      mma_abt_16x64<D>(do_s + r0 * kLdH, kLdH, v_s, kLdH, c_s + r0 * kLdS, kLdS);
      __syncwarp();

      // P = exp(scale S - lse) on visible pairs, dS = P (dP - delta).
#pragma unroll 4
      for (int r = 0; r < kWm; ++r) {
        const int row = r0 + r;
        const float l = lse_s[row], dl = delta_s[row];
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int c = lane + 32 * e;
          const bool vis = row < nq && c < nk && l != -INFINITY &&
                           (!p.causal || kpos_s[c] <= qpos_s[row]) &&
                           (!seg || kseg_s[c] == qseg_s[row]);
          const float pr = vis ? expf(p.scale * s_s[row * kLdS + c] - l) : 0.0f;
          const float ds = pr * (c_s[row * kLdS + c] - dl);
          p_s[row * kLdP + c] = __float2bfloat16_rn(pr);
          ds_s[row * kLdP + c] = __float2bfloat16_rn(ds);
        }
      }
      __syncthreads();  // dV, dK read every query row of P and dS

      // dV[keys r0..] += P^T dO, dK[keys r0..] += dS^T Q (scale applied at the end).
#pragma unroll
      for (int n = 0; n < kNd; ++n) {
#pragma unroll
        for (int kk = 0; kk < kBM / kWm; ++kk) {
          FragAt fp, fds;  // P^T[key][q] = P[q][key]: col-major view
          FragB fdo, fq;
          wmma::load_matrix_sync(fp, p_s + kk * kWm * kLdP + r0, kLdP);
          wmma::load_matrix_sync(fdo, do_s + kk * kWm * kLdH + n * kWm, kLdH);
          wmma::mma_sync(dv_acc[n], fp, fdo, dv_acc[n]);
          wmma::load_matrix_sync(fds, ds_s + kk * kWm * kLdP + r0, kLdP);
          wmma::load_matrix_sync(fq, q_s + kk * kWm * kLdH + n * kWm, kLdH);
          wmma::mma_sync(dk_acc[n], fds, fq, dk_acc[n]);
        }
      }

      // dQ tile rows r0.. = dS K -> c_s [64, kLdO] (the warp's own rows; the
      // dP values there were read before the __syncthreads above).
#pragma unroll
      for (int n = 0; n < kNd; ++n) {
        FragC acc;
        wmma::fill_fragment(acc, 0.0f);
#pragma unroll
        for (int kk = 0; kk < kBN / kWm; ++kk) {
          FragA fds;
          FragB fk;
          wmma::load_matrix_sync(fds, ds_s + r0 * kLdP + kk * kWm, kLdP);
          wmma::load_matrix_sync(fk, k_s + kk * kWm * kLdH + n * kWm, kLdH);
          wmma::mma_sync(acc, fds, fk, acc);
        }
        wmma::store_matrix_sync(c_s + r0 * kLdO + n * kWm, acc, kLdO, wmma::mem_row_major);
      }
      __syncwarp();
      // dq_acc[b, i, h, :] += scale * dQ tile row (f32 atomics, one per element).
      for (int r = 0; r < kWm; ++r) {
        const int row = r0 + r;
        if (row >= nq) break;  // warp-uniform
        float* dst = p.dq_acc + ((bb * p.tq + i0 + row) * p.hq + h) * D;
#pragma unroll
        for (int x = lane; x < D; x += 32) atomicAdd(dst + x, p.scale * c_s[row * kLdO + x]);
      }
    }
  }

  // dv += dV, dk += scale dK for the warp's keys, through c_s (its own rows).
  __syncthreads();
  const int64_t key_stride = p.hkv * D;
  const int64_t first_key = ((bb * p.tk + j0) * p.hkv + hk) * D;
  add_key_rows<D, kNd>(c_s, dv_acc, p.dv + first_key, key_stride, r0, nk, 1.0f);
  add_key_rows<D, kNd>(c_s, dk_acc, p.dk + first_key, key_stride, r0, nk, p.scale);
}

// dq [n] (bf16) += dq_acc [n] (f32), rounded once; n = B Tq Hq D (even).
__global__ void flash_bwd_dq_finish_kernel(bf16_t* dq, const float* dq_acc, int64_t n2) {
  for (int64_t x = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; x < n2;
       x += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    __nv_bfloat162* d2 = reinterpret_cast<__nv_bfloat162*>(dq) + x;
    const float2 a = reinterpret_cast<const float2*>(dq_acc)[x];
    const float2 o = __bfloat1622float2(*d2);
    *d2 = __floats2bfloat162_rn(o.x + a.x, o.y + a.y);
  }
}

Params make_params(const AttentionShape& s, const void* q, const void* k, const void* v,
                   const int32_t* q_pos, const int32_t* k_pos, const int32_t* q_seg,
                   const int32_t* k_seg) {
  Params p{};
  p.q = static_cast<const bf16_t*>(q);
  p.k = static_cast<const bf16_t*>(k);
  p.v = static_cast<const bf16_t*>(v);
  p.q_pos = q_pos;
  p.k_pos = k_pos;
  p.q_seg = q_seg != nullptr && k_seg != nullptr ? q_seg : nullptr;
  p.k_seg = p.q_seg != nullptr ? k_seg : nullptr;
  p.b = s.b;
  p.tq = s.tq;
  p.tk = s.tk;
  p.hq = s.hq;
  p.hkv = s.hkv;
  p.scale = static_cast<float>(s.scale);
  p.causal = s.causal;
  return p;
}

void check_flash_shape(const AttentionShape& s, const char* op) {
  ROTOR_CHECK(s.hkv > 0 && s.hq % s.hkv == 0)
      << op << ": Hq (" << s.hq << ") must be a multiple of Hkv (" << s.hkv << ")";
  ROTOR_CHECK(s.d == 64 || s.d == 128) << op << ": flash head dim 64 or 128, got " << s.d;
  ROTOR_CHECK(s.hq <= 65535 && s.hkv <= 65535 && s.b <= 65535)
      << op << ": grid y/z limits (heads, batch <= 65535)";
}

// f(std::integral_constant<int, D>) for D = 64 or 128 (checked before).
template <class F>
void dispatch_flash(int64_t d, F&& f) {
  if (d == 64) {
    f(std::integral_constant<int, 64>{});
  } else {
    f(std::integral_constant<int, 128>{});
  }
}

}  // namespace

bool flash_attention_supported(Float t, const AttentionShape& s, const void* const* ptrs,
                               int n_ptrs) {
  if (t != Float::kBF16 || (s.d != 64 && s.d != 128)) return false;
  if (s.hkv <= 0 || s.hq % s.hkv != 0 || s.hq > 65535 || s.b > 65535) return false;
  for (int x = 0; x < n_ptrs; ++x)
    if (ptrs[x] != nullptr && !aligned16(ptrs[x])) return false;
  return true;
}

void flash_attention_forward(const AttentionShape& s, const void* q, const void* k, const void* v,
                             const int32_t* q_pos, const int32_t* k_pos, const int32_t* q_seg,
                             const int32_t* k_seg, void* out, float* lse, float* entropy,
                             cudaStream_t stream) {
  check_flash_shape(s, "flash_attention_forward");
  if (s.b == 0 || s.tq == 0 || s.hq == 0) return;
  Params p = make_params(s, q, k, v, q_pos, k_pos, q_seg, k_seg);
  p.out_w = static_cast<bf16_t*>(out);
  p.lse = lse;
  p.entropy = entropy;
  const dim3 grid(static_cast<unsigned>((s.tq + kBM - 1) / kBM), static_cast<unsigned>(s.hq),
                  static_cast<unsigned>(s.b));
  dispatch_flash(s.d, [&](auto d_tag) {
    constexpr int D = decltype(d_tag)::value;
    constexpr size_t bytes = Dims<D>::kFwdBytes;
    ROTOR_CUDA_CHECK(cudaFuncSetAttribute(flash_fwd_kernel<D>,
                                          cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          static_cast<int>(bytes)));
    flash_fwd_kernel<D><<<grid, kThreads, bytes, stream>>>(p);
    ROTOR_CUDA_LAUNCHED("flash_fwd_kernel", stream);
  });
}

size_t flash_attention_backward_scratch_bytes(const AttentionShape& s) {
  const size_t acc = static_cast<size_t>(s.b * s.tq * s.hq * s.d) * sizeof(float);
  const size_t delta = static_cast<size_t>(s.b * s.hq * s.tq) * sizeof(float);
  return (acc + 255) / 256 * 256 + delta;
}

void flash_attention_backward(const AttentionShape& s, const void* q, const void* k, const void* v,
                              const int32_t* q_pos, const int32_t* k_pos, const int32_t* q_seg,
                              const int32_t* k_seg, const void* out, const float* lse,
                              const void* dout, void* dq, void* dk, void* dv, void* scratch,
                              cudaStream_t stream) {
  check_flash_shape(s, "flash_attention_backward");
  if (s.b == 0 || s.tq == 0 || s.tk == 0 || s.hq == 0) return;
  ROTOR_CHECK(scratch != nullptr && aligned16(scratch))
      << "flash_attention_backward: scratch of flash_attention_backward_scratch_bytes, 16-byte aligned";
  Params p = make_params(s, q, k, v, q_pos, k_pos, q_seg, k_seg);
  p.out = static_cast<const bf16_t*>(out);
  p.lse = const_cast<float*>(lse);  // read only by the backward
  p.dout = static_cast<const bf16_t*>(dout);
  p.dq = static_cast<bf16_t*>(dq);
  p.dk = static_cast<bf16_t*>(dk);
  p.dv = static_cast<bf16_t*>(dv);
  const size_t acc_bytes = static_cast<size_t>(s.b * s.tq * s.hq * s.d) * sizeof(float);
  p.dq_acc = static_cast<float*>(scratch);
  p.delta = reinterpret_cast<float*>(static_cast<char*>(scratch) + (acc_bytes + 255) / 256 * 256);

  const int64_t rows = s.b * s.tq * s.hq;
  const unsigned prep_blocks = static_cast<unsigned>((rows + 7) / 8);  // 8 warps per block
  const dim3 grid(static_cast<unsigned>((s.tk + kBN - 1) / kBN), static_cast<unsigned>(s.hkv),
                  static_cast<unsigned>(s.b));
  const int64_t n2 = rows * s.d / 2;
  dispatch_flash(s.d, [&](auto d_tag) {
    constexpr int D = decltype(d_tag)::value;
    flash_bwd_prep_kernel<D><<<prep_blocks, 256, 0, stream>>>(p);
    ROTOR_CUDA_LAUNCHED("flash_bwd_prep_kernel", stream);
    constexpr size_t bytes = Dims<D>::kBwdBytes;
    ROTOR_CUDA_CHECK(cudaFuncSetAttribute(flash_bwd_kernel<D>,
                                          cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          static_cast<int>(bytes)));
    flash_bwd_kernel<D><<<grid, kThreads, bytes, stream>>>(p);
    ROTOR_CUDA_LAUNCHED("flash_bwd_kernel", stream);
    flash_bwd_dq_finish_kernel<<<grid_for(n2, 256), 256, 0, stream>>>(p.dq, p.dq_acc, n2);
    ROTOR_CUDA_LAUNCHED("flash_bwd_dq_finish_kernel", stream);
  });
}

}  // namespace rotor::cuda
