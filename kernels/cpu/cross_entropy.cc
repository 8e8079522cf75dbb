// CPU reference: output projection fused with cross-entropy, tile by tile.
// The largest buffer is one [tokens, vocab] tile of the chunk sizes.
// bf16 h and w are widened to f32 copies first (so the tiles, the LSE and the
// gradients are all f32 math, and loss, lse, dloss and dw are f32 tensors);
// dh is computed in f32 and rounded to bf16 once at the end.
#include "kernels/cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/cuda/ops.h"
#include "kernels/cpu/dispatch.h"
#include "kernels/matmul.h"
#include "kernels/cpu/threads.h"

namespace rotor {

namespace {
void check_args(const Tensor& h, const Tensor& w, const Tensor& targets, const Tensor& lse,
                CrossEntropyChunks chunks, const char* op, int64_t vocab_start = 0,
                int64_t vocab_size = 0) {
  for (const Tensor* t : {&h, &w, &targets, &lse}) check_cpu(*t, op);
  check_float(h, op);
  check_same_dtype(h, w, op);
  check_compute_dtype(lse, h.dtype(), op, "lse");
  ROTOR_CHECK(h.ndim() == 2 && w.ndim() == 2 && h.dim(1) == w.dim(1))
      << op << ": h [N, D] and w [V, D], got " << h.str() << " and " << w.str();
  ROTOR_CHECK(targets.dtype() == DType::kI32 && targets.numel() == h.dim(0))
      << op << ": targets must be [N] i32, got " << targets.str();
  ROTOR_CHECK_EQ(lse.numel(), h.dim(0)) << op << ": lse must be [N]";
  ROTOR_CHECK(chunks.tokens > 0 && chunks.vocab > 0) << op << ": chunk sizes must be > 0";
  ROTOR_CHECK(vocab_start >= 0) << op << ": vocab_start must be >= 0";
  ROTOR_CHECK(vocab_size == 0 || vocab_start + w.dim(0) <= vocab_size)
      << op << ": slice [" << vocab_start << ", " << vocab_start + w.dim(0)
      << ") outside the vocabulary of " << vocab_size;
  const int64_t limit = vocab_size > 0 ? vocab_size : w.dim(0);
  const int32_t* tg = targets.data<int32_t>();
  for (int64_t i = 0; i < targets.numel(); ++i)
    ROTOR_CHECK(tg[i] < limit) << op << ": target " << tg[i] << " at " << i
                               << " outside the vocabulary of " << limit;
}
}  // namespace

void cross_entropy_forward(const Tensor& h, const Tensor& w, const Tensor& targets,
                           const Tensor& loss, const Tensor& lse, CrossEntropyChunks chunks,
                           int64_t vocab_start, int64_t vocab_size) {
  ROTOR_ON_GPU(h, cuda::cross_entropy_forward(h, w, targets, loss, lse, chunks, vocab_start, vocab_size));
  check_args(h, w, targets, lse, chunks, "cross_entropy_forward", vocab_start, vocab_size);
  check_cpu(loss, "cross_entropy_forward");
  check_compute_dtype(loss, h.dtype(), "cross_entropy_forward", "loss");
  ROTOR_CHECK_EQ(loss.numel(), h.dim(0));
  const int64_t n = h.dim(0), v = w.dim(0);
  const int64_t nt = std::min(chunks.tokens, std::max<int64_t>(n, 1));
  const int64_t nv = std::min(chunks.vocab, v);
  const int32_t* tg = targets.data<int32_t>();
  const Tensor hw = cpu::widen(h), ww = cpu::widen(w);
  cpu::dispatch_float(hw.dtype(), "cross_entropy_forward", [&]<class T>() {
    Tensor tile_buf = Tensor::empty_like(hw, {nt, nv});
    T* lp = loss.data<T>();
    T* lsep = lse.data<T>();
    std::vector<T> run_max(nt), run_sum(nt), target_logit(nt);
    for (int64_t t0 = 0; t0 < n; t0 += nt) {
      const int64_t rows = std::min(nt, n - t0);
      std::fill(run_max.begin(), run_max.end(), -std::numeric_limits<T>::infinity());
      std::fill(run_sum.begin(), run_sum.end(), T(0));
      std::fill(target_logit.begin(), target_logit.end(), T(0));
      for (int64_t v0 = 0; v0 < v; v0 += nv) {
        const int64_t cols = std::min(nv, v - v0);
        Tensor tile = tile_buf.view({nt * nv}).narrow(0, rows * cols).view({rows, cols});
        matmul(hw.narrow(t0, rows), ww.narrow(v0, cols), tile, false, true);  // [rows, cols]
        const T* lg = tile.data<T>();
#pragma omp parallel for schedule(static) if (cpu::worth_threads(rows * cols))
        for (int64_t r = 0; r < rows; ++r) {
          const T* row = lg + r * cols;
          T mx = run_max[r];
          for (int64_t c = 0; c < cols; ++c) mx = std::max(mx, row[c]);
          T s = run_sum[r] * std::exp(run_max[r] - mx);  // exp(-inf) = 0 on the first tile
          for (int64_t c = 0; c < cols; ++c) s += std::exp(row[c] - mx);
          run_max[r] = mx;
          run_sum[r] = s;
          const int64_t target = tg[t0 + r] - vocab_start;  // index in this slice
          if (target >= v0 && target < v0 + cols) target_logit[r] = row[target - v0];
        }
      }
      for (int64_t r = 0; r < rows; ++r) {
        const T l = run_max[r] + std::log(run_sum[r]);
        lsep[t0 + r] = l;
        lp[t0 + r] = tg[t0 + r] < 0 ? T(0) : l - target_logit[r];
      }
    }
  });
}

void cross_entropy_backward(const Tensor& h, const Tensor& w, const Tensor& targets,
                            const Tensor& lse, const Tensor& dloss, const Tensor& dh,
                            const Tensor& dw, CrossEntropyChunks chunks, int64_t vocab_start,
                            int64_t vocab_size) {
  ROTOR_ON_GPU(h, cuda::cross_entropy_backward(h, w, targets, lse, dloss, dh, dw, chunks, vocab_start, vocab_size));
  check_args(h, w, targets, lse, chunks, "cross_entropy_backward", vocab_start, vocab_size);
  const char* op = "cross_entropy_backward";
  for (const Tensor* t : {&dloss, &dh, &dw}) check_cpu(*t, op);
  check_compute_dtype(dloss, h.dtype(), op, "dloss");
  check_same_dtype(h, dh, op);
  check_compute_dtype(dw, h.dtype(), op, "dw");
  ROTOR_CHECK_EQ(dloss.numel(), h.dim(0));
  ROTOR_CHECK(dh.shape() == h.shape() && dw.shape() == w.shape()) << "cross_entropy_backward";
  const int64_t n = h.dim(0), v = w.dim(0);
  const int64_t nt = std::min(chunks.tokens, std::max<int64_t>(n, 1));
  const int64_t nv = std::min(chunks.vocab, v);
  const int32_t* tg = targets.data<int32_t>();
  const Tensor hw = cpu::widen(h), ww = cpu::widen(w), dhw = cpu::wide_output(dh);
  cpu::dispatch_float(hw.dtype(), op, [&]<class T>() {
    Tensor tile_buf = Tensor::empty_like(hw, {nt, nv});
    const T* lsep = lse.data<T>();
    const T* dl = dloss.data<T>();
    dhw.zero();
    for (int64_t t0 = 0; t0 < n; t0 += nt) {
      const int64_t rows = std::min(nt, n - t0);
      const Tensor h_c = hw.narrow(t0, rows);
      const Tensor dh_c = dhw.narrow(t0, rows);
      for (int64_t v0 = 0; v0 < v; v0 += nv) {
        const int64_t cols = std::min(nv, v - v0);
        Tensor tile = tile_buf.view({nt * nv}).narrow(0, rows * cols).view({rows, cols});
        matmul(h_c, ww.narrow(v0, cols), tile, false, true);
        T* lg = tile.data<T>();
#pragma omp parallel for schedule(static) if (cpu::worth_threads(rows * cols))
        for (int64_t r = 0; r < rows; ++r) {
          T* row = lg + r * cols;
          if (tg[t0 + r] < 0) {
            std::fill(row, row + cols, T(0));
            continue;
          }
          const int64_t target = tg[t0 + r] - vocab_start;  // index in this slice
          const T g = dl[t0 + r], l = lsep[t0 + r];
          for (int64_t c = 0; c < cols; ++c) row[c] = g * std::exp(row[c] - l);
          if (target >= v0 && target < v0 + cols) row[target - v0] -= g;
        }
        matmul(tile, ww.narrow(v0, cols), dh_c, false, false, 1.0, 1.0);  // dh += dlogits w
        matmul(tile, h_c, dw.narrow(v0, cols), true, false, 1.0, 1.0);    // dw += dlogits^T h
      }
    }
  });
  cpu::narrow_into(dhw, dh);
}

void cross_entropy_forward_backward(const Tensor& h, const Tensor& w, const Tensor& targets,
                                    const Tensor& dloss, const Tensor& loss, const Tensor& lse,
                                    const Tensor& dh, const Tensor& dw, CrossEntropyChunks chunks) {
  ROTOR_ON_GPU(h, cuda::cross_entropy_forward_backward(h, w, targets, dloss, loss, lse, dh, dw, chunks));
  const char* op = "cross_entropy_forward_backward";
  check_args(h, w, targets, lse, chunks, op);
  for (const Tensor* t : {&dloss, &loss, &dh, &dw}) check_cpu(*t, op);
  check_compute_dtype(dloss, h.dtype(), op, "dloss");
  check_compute_dtype(loss, h.dtype(), op, "loss");
  check_same_dtype(h, dh, op);
  check_compute_dtype(dw, h.dtype(), op, "dw");
  ROTOR_CHECK(dloss.numel() == h.dim(0) && loss.numel() == h.dim(0)) << "dloss and loss are [N]";
  ROTOR_CHECK(dh.shape() == h.shape() && dw.shape() == w.shape()) << "dh/dw shapes";
  const int64_t n = h.dim(0), v = w.dim(0);
  const int64_t nt = std::clamp<int64_t>(chunks.fused_tile_elements / std::max<int64_t>(v, 1), 1,
                                         std::max<int64_t>(n, 1));
  const int32_t* tg = targets.data<int32_t>();
  const Tensor hw = cpu::widen(h), ww = cpu::widen(w), dhw = cpu::wide_output(dh);
  cpu::dispatch_float(hw.dtype(), op, [&]<class T>() {
    Tensor tile_buf = Tensor::empty_like(hw, {nt, v});
    const T* dl = dloss.data<T>();
    T* lp = loss.data<T>();
    T* lsep = lse.data<T>();
    for (int64_t t0 = 0; t0 < n; t0 += nt) {
      const int64_t rows = std::min(nt, n - t0);
      const Tensor h_c = hw.narrow(t0, rows);
      Tensor tile = tile_buf.narrow(0, rows);                 // [rows, V]
      matmul(h_c, ww, tile, false, true);                      // logits
      T* lg = tile.data<T>();
#pragma omp parallel for schedule(static) if (cpu::worth_threads(rows * v))
      for (int64_t r = 0; r < rows; ++r) {
        T* row = lg + r * v;
        const int64_t target = tg[t0 + r];
        T mx = row[0];
        for (int64_t c = 1; c < v; ++c) mx = std::max(mx, row[c]);
        T s = 0;
        for (int64_t c = 0; c < v; ++c) s += std::exp(row[c] - mx);
        const T l = mx + std::log(s);
        lsep[t0 + r] = l;
        if (target < 0) {
          lp[t0 + r] = T(0);
          std::fill(row, row + v, T(0));
          continue;
        }
        lp[t0 + r] = l - row[target];
        const T g = dl[t0 + r];
        for (int64_t c = 0; c < v; ++c) row[c] = g * std::exp(row[c] - l);  // dlogits
        row[target] -= g;
      }
      matmul(tile, ww, dhw.narrow(t0, rows));                  // dh = dlogits w
      matmul(tile, h_c, dw, true, false, 1.0, 1.0);            // dw += dlogits^T h
    }
  });
  cpu::narrow_into(dhw, dh);
}

}  // namespace rotor
