// Simple, correct CUDA attention of kernels/attention.h (the fast flash
// kernels are kernels/cuda/flash_*): blockwise, GQA, global positions,
// document masking, lse and entropy, and the LSE merge.
//
// forward: one block (128 threads) per query row (b, h, i). The row's q is
//   staged in shared memory (f32). Pass 1: each thread takes keys
//   j = tid, tid + 128, ..., computes s_j = scale q.k_j for the visible ones
//   and the block reduces the max m. Pass 2, over chunks of 128 keys: each
//   thread computes e_j = exp(s_j - m) of its key into shared memory and adds
//   e_j and e_j (s_j - m) to its partial l and es; then the threads, one per
//   output dimension x (up to kMaxD / 128 each), accumulate sum_j e_j v_j[x].
//   out = acc * (1 / l), lse = m + log l, entropy = log l - es / l; a row that
//   sees no key gets out = 0, lse = -inf, entropy = 0.
// backward: one block (128 threads) per query row (b, h, i). delta =
//   dout_i . out_i (block sum); over chunks of 128 keys each thread computes,
//   for its visible key, p_j = exp(scale q.k_j - lse) and
//   ds_j = p_j (dout_i . v_j - delta) into shared memory; then the threads,
//   one per dimension x, accumulate dq_i[x] += scale sum_j ds_j k_j[x] (the
//   block owns row i of head h: plain read-add-write at the end) and add
//   scale ds_j q_i[x] into dk_j[x] and p_j dout_i[x] into dv_j[x] with atomicAdd
//   (f32, or bf16 rounded at every add; sm_80+). Rows with lse = -inf add nothing.
// merge: one warp per row (b, h, i) (8 rows per 256-thread block), lanes
//   stride over D.
// All arithmetic f32 (dots, sums, exp); bf16 rounded at the store. lse and
// entropy are f32 whatever the dtype of q, k, v and out.
//
// Routing: attention_forward / attention_backward hand bf16 calls with head
// dim 64 or 128 (and 16-byte aligned buffers) to the flash kernels of
// kernels/cuda/flash_attention.cu; the kernels here serve every other case.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/flash_attention.h"
#include "kernels/cuda/memory.h"

namespace rotor::cuda {

namespace {

constexpr int kThreads = 128;
constexpr int kMaxD = 512;                 // head dims up to this
constexpr int kPerThread = kMaxD / kThreads;  // output dims per thread

// The mask of one call (kernels/attention.h).
struct Mask {
  const int32_t* q_pos;  // [B, Tq]
  const int32_t* k_pos;  // [B, Tk]
  const int32_t* q_seg;  // [B, Tq] or null
  const int32_t* k_seg;  // [B, Tk] or null
  bool causal;

  // Key j of batch row b visible to query i.
  __device__ bool visible(int64_t b, int64_t i, int64_t j, int64_t tq, int64_t tk) const {
    if (causal && k_pos[b * tk + j] > q_pos[b * tq + i]) return false;
    if (q_seg != nullptr && q_seg[b * tq + i] != k_seg[b * tk + j]) return false;
    return true;
  }
};

// Dot product of a shared f32 row [d] with a T row [d] in global memory.
template <class T>
__device__ __forceinline__ float dot_row(const float* a, const T* b, int64_t d) {
  float s = 0.0f;
  for (int64_t x = 0; x < d; ++x) s += a[x] * to_f32(b[x]);
  return s;
}

// q, out [B, Tq, Hq, D]; k, v [B, Tk, Hkv, D]; lse, entropy [B, Hq, Tq] f32.
template <class T>
__global__ void attention_forward_kernel(AttentionShape s, float scale, const T* q, const T* k,
                                         const T* v, Mask mask, T* out, float* lse,
                                         float* entropy) {
  __shared__ float q_s[kMaxD];
  __shared__ float e_s[kThreads];
  __shared__ float red[32];
  const int64_t D = s.d, Tq = s.tq, Tk = s.tk, Hq = s.hq, Hkv = s.hkv;
  const int64_t row = blockIdx.x;  // (b * Hq + h) * Tq + i
  const int64_t i = row % Tq, h = (row / Tq) % Hq, b = row / (Tq * Hq);
  const int64_t hk = h / (Hq / Hkv);
  const int64_t ldk = Hkv * D;  // elements between consecutive keys of one head
  const T* qr = q + ((b * Tq + i) * Hq + h) * D;
  const T* kh = k + b * Tk * ldk + hk * D;
  const T* vh = v + b * Tk * ldk + hk * D;
  T* orow = out + ((b * Tq + i) * Hq + h) * D;
  for (int64_t x = threadIdx.x; x < D; x += blockDim.x) q_s[x] = to_f32(qr[x]);
  __syncthreads();

  // Pass 1: the max visible logit.
  float m = -INFINITY;
  for (int64_t j = threadIdx.x; j < Tk; j += blockDim.x)
    if (mask.visible(b, i, j, Tq, Tk)) m = nan_max(m, __fmul_rn(scale, dot_row(q_s, kh + j * ldk, D)));
  m = block_max(m, red);
  if (m == -INFINITY) {  // no visible key: the identity of attention_merge
    for (int64_t x = threadIdx.x; x < D; x += blockDim.x) orow[x] = from_f32<T>(0.0f);
    if (threadIdx.x == 0) {
      lse[row] = -INFINITY;
      if (entropy != nullptr) entropy[row] = 0.0f;
    }
    return;
  }

  // Pass 2: e_j = exp(s_j - m), l = sum e_j, es = sum e_j (s_j - m), acc = sum e_j v_j.
  float l = 0.0f, es = 0.0f;
  float acc[kPerThread];
#pragma unroll
  for (int k2 = 0; k2 < kPerThread; ++k2) acc[k2] = 0.0f;
  for (int64_t j0 = 0; j0 < Tk; j0 += blockDim.x) {
    const int64_t j = j0 + threadIdx.x;
    float e = 0.0f;
    if (j < Tk && mask.visible(b, i, j, Tq, Tk)) {
      const float xj = __fmul_rn(scale, dot_row(q_s, kh + j * ldk, D)) - m;  // s_j - m
      e = expf(xj);
      l += e;
      if (e != 0.0f) es += e * xj;
    }
    __syncthreads();  // the previous chunk's e_s is consumed
    e_s[threadIdx.x] = e;
    __syncthreads();
    const int64_t n = Tk - j0 < blockDim.x ? Tk - j0 : blockDim.x;
    for (int64_t jj = 0; jj < n; ++jj) {
      const float ej = e_s[jj];
      if (ej == 0.0f) continue;  // masked (or underflowed): adds nothing
      const T* vr = vh + (j0 + jj) * ldk;
#pragma unroll
      for (int k2 = 0; k2 < kPerThread; ++k2) {
        const int64_t x = threadIdx.x + k2 * static_cast<int64_t>(blockDim.x);
        if (x < D) acc[k2] += ej * to_f32(vr[x]);
      }
    }
  }
  l = block_sum(l, red);
  es = block_sum(es, red);
  const float inv_l = 1.0f / l, log_l = logf(l);
#pragma unroll
  for (int k2 = 0; k2 < kPerThread; ++k2) {
    const int64_t x = threadIdx.x + k2 * static_cast<int64_t>(blockDim.x);
    if (x < D) orow[x] = from_f32<T>(acc[k2] * inv_l);
  }
  if (threadIdx.x == 0) {
    lse[row] = m + log_l;
    // H = log l - sum_j p_j (s_j - m): relative to the max, as the CPU reference.
    if (entropy != nullptr) entropy[row] = log_l - es / l;
  }
}

// q, out, dout, dq [B, Tq, Hq, D]; k, v, dk, dv [B, Tk, Hkv, D]; lse [B, Hq, Tq] f32.
template <class T>
__global__ void attention_backward_kernel(AttentionShape s, float scale, const T* q, const T* k,
                                          const T* v, Mask mask, const T* out, const float* lse,
                                          const T* dout, T* dq, T* dk, T* dv) {
  __shared__ float q_s[kMaxD];
  __shared__ float g_s[kMaxD];  // dout row
  __shared__ float p_s[kThreads];
  __shared__ float ds_s[kThreads];
  __shared__ float red[32];
  const int64_t D = s.d, Tq = s.tq, Tk = s.tk, Hq = s.hq, Hkv = s.hkv;
  const int64_t row = blockIdx.x;  // (b * Hq + h) * Tq + i
  const int64_t i = row % Tq, h = (row / Tq) % Hq, b = row / (Tq * Hq);
  const int64_t hk = h / (Hq / Hkv);
  const int64_t ldk = Hkv * D;
  const float l = lse[row];
  if (l == -INFINITY) return;  // the row saw no key: p = 0 everywhere
  const int64_t off = ((b * Tq + i) * Hq + h) * D;
  const T* kh = k + b * Tk * ldk + hk * D;
  const T* vh = v + b * Tk * ldk + hk * D;
  T* dkh = dk + b * Tk * ldk + hk * D;
  T* dvh = dv + b * Tk * ldk + hk * D;
  float delta = 0.0f;  // dout_i . out_i
  for (int64_t x = threadIdx.x; x < D; x += blockDim.x) {
    q_s[x] = to_f32(q[off + x]);
    g_s[x] = to_f32(dout[off + x]);
    delta += g_s[x] * to_f32(out[off + x]);
  }
  delta = block_sum(delta, red);  // also makes q_s, g_s visible to the block

  float acc[kPerThread];  // sum_j ds_j k_j[x]
#pragma unroll
  for (int k2 = 0; k2 < kPerThread; ++k2) acc[k2] = 0.0f;
  for (int64_t j0 = 0; j0 < Tk; j0 += blockDim.x) {
    const int64_t j = j0 + threadIdx.x;
    float p = 0.0f, ds = 0.0f;
    bool vis = false;
    if (j < Tk && mask.visible(b, i, j, Tq, Tk)) {
      vis = true;
      p = expf(__fmul_rn(scale, dot_row(q_s, kh + j * ldk, D)) - l);
      ds = p * (dot_row(g_s, vh + j * ldk, D) - delta);
    }
    __syncthreads();  // the previous chunk is consumed
    p_s[threadIdx.x] = vis ? p : -1.0f;  // -1: not visible
    ds_s[threadIdx.x] = ds;
    __syncthreads();
    const int64_t n = Tk - j0 < blockDim.x ? Tk - j0 : blockDim.x;
    for (int64_t jj = 0; jj < n; ++jj) {
      const float pj = p_s[jj];
      if (pj < 0.0f) continue;
      const float dsj = ds_s[jj];
      const int64_t kr = (j0 + jj) * ldk;
#pragma unroll
      for (int k2 = 0; k2 < kPerThread; ++k2) {
        const int64_t x = threadIdx.x + k2 * static_cast<int64_t>(blockDim.x);
        if (x < D) {
          acc[k2] += dsj * to_f32(kh[kr + x]);
          atomicAdd(dkh + kr + x, from_f32<T>(scale * dsj * q_s[x]));
          atomicAdd(dvh + kr + x, from_f32<T>(pj * g_s[x]));
        }
      }
    }
  }
#pragma unroll
  for (int k2 = 0; k2 < kPerThread; ++k2) {
    const int64_t x = threadIdx.x + k2 * static_cast<int64_t>(blockDim.x);
    if (x < D) dq[off + x] = from_f32<T>(to_f32(dq[off + x]) + scale * acc[k2]);
  }
}

// out_acc, out_blk [B, Tq, Hq, D]; lse_*, entropy_* [B, Hq, Tq] f32 (entropy
// merged only when both are non-null).
template <class T>
__global__ void attention_merge_kernel(int64_t rows, int64_t tq, int64_t hq, int64_t d, T* oa,
                                       float* la, float* ea, const T* ob, const float* lb,
                                       const float* eb) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  const int64_t i = row % tq, h = (row / tq) % hq, b = row / (tq * hq);
  T* o1 = oa + ((b * tq + i) * hq + h) * d;
  const T* o2 = ob + ((b * tq + i) * hq + h) * d;
  const float l1 = la[row], l2 = lb[row];
  if (l2 == -INFINITY) {  // the block saw no key: it contributes nothing
    if (l1 == -INFINITY) {  // neither did the accumulator: the identity
      for (int64_t x = lane; x < d; x += 32) o1[x] = from_f32<T>(0.0f);
      if (ea != nullptr && lane == 0) ea[row] = 0.0f;
    }
    return;
  }
  if (l1 == -INFINITY) {  // the accumulator is the identity: take the block
    for (int64_t x = lane; x < d; x += 32) o1[x] = o2[x];
    if (lane == 0) {
      la[row] = lb[row];
      if (ea != nullptr) ea[row] = eb[row];
    }
    return;
  }
  // Both finite: m = max, g = |l1 - l2|, c = log1p(exp(-g)); lse = m + c,
  // w_b = exp(l_b - lse); entropy = sum_b w_b (H_b + (lse - l_b)).
  const bool first_max = l1 >= l2;
  const float g = first_max ? l1 - l2 : l2 - l1;
  const float c = log1pf(expf(-g));
  const float d1 = first_max ? c : c + g;  // lse - l1
  const float d2 = first_max ? c + g : c;  // lse - l2
  const float w1 = expf(-d1), w2 = expf(-d2);
  for (int64_t x = lane; x < d; x += 32)
    o1[x] = from_f32<T>(__fadd_rn(__fmul_rn(w1, to_f32(o1[x])), __fmul_rn(w2, to_f32(o2[x]))));
  if (lane == 0) {
    la[row] = (first_max ? l1 : l2) + c;
    if (ea != nullptr) {
      float e = 0.0f;  // blocks with w_b == 0 (underflow) are skipped
      if (w1 != 0.0f) e += w1 * (ea[row] + d1);
      if (w2 != 0.0f) e += w2 * (eb[row] + d2);
      ea[row] = e;
    }
  }
}

void check_shape(const AttentionShape& s, const char* op) {
  ROTOR_CHECK(s.hkv > 0 && s.hq % s.hkv == 0)
      << op << ": Hq (" << s.hq << ") must be a multiple of Hkv (" << s.hkv << ")";
  ROTOR_CHECK(s.d <= kMaxD) << op << ": head dim " << s.d << " above " << kMaxD
                            << " (the simple kernel's limit)";
}

}  // namespace

void attention_forward(Float t, const AttentionShape& s, const void* q, const void* k,
                       const void* v, const int32_t* q_pos, const int32_t* k_pos,
                       const int32_t* q_seg, const int32_t* k_seg, void* out, float* lse,
                       float* entropy, cudaStream_t stream) {
  check_shape(s, "attention_forward");
  const int64_t rows = s.b * s.hq * s.tq;
  if (rows == 0) return;
  const void* flash_ptrs[] = {q, k, v, out};
  if (flash_attention_supported(t, s, flash_ptrs, 4)) {  // lse, entropy: f32
    flash_attention_forward(s, q, k, v, q_pos, k_pos, q_seg, k_seg, out, lse, entropy, stream);
    return;
  }
  const Mask mask{q_pos, k_pos, q_seg, k_seg, s.causal};
  const float scale = static_cast<float>(s.scale);
  dispatch(t, [&](auto tag) {
    using T = decltype(tag);
    attention_forward_kernel<T><<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(
        s, scale, static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v),
        mask, static_cast<T*>(out), lse, entropy);
    ROTOR_CUDA_LAUNCHED("attention_forward_kernel", stream);
  });
}

void attention_backward(Float t, const AttentionShape& s, const void* q, const void* k,
                        const void* v, const int32_t* q_pos, const int32_t* k_pos,
                        const int32_t* q_seg, const int32_t* k_seg, const void* out,
                        const float* lse, const void* dout, void* dq, void* dk, void* dv,
                        cudaStream_t stream) {
  check_shape(s, "attention_backward");
  const int64_t rows = s.b * s.hq * s.tq;
  if (rows == 0 || s.tk == 0) return;
  const void* flash_ptrs[] = {q, k, v, out, dout, dq, dk, dv};
  if (flash_attention_supported(t, s, flash_ptrs, 8)) {
    // The op passes no scratch (ops.cc), so take it from the caching
    // allocator: all work of a device runs on its compute stream (`stream`),
    // so releasing right after the launches is safe (memory.h: later work on
    // the stream reuses the block only after these kernels).
    cudaPointerAttributes attr{};
    ROTOR_CUDA_CHECK(cudaPointerGetAttributes(&attr, q));  // the device that holds the tensors
    const int device = attr.device;
    const size_t bytes = flash_attention_backward_scratch_bytes(s);
    void* scratch = allocate(device, bytes);
    flash_attention_backward(s, q, k, v, q_pos, k_pos, q_seg, k_seg, out, lse, dout, dq, dk, dv,
                             scratch, stream);
    release(device, scratch);
    return;
  }
  const Mask mask{q_pos, k_pos, q_seg, k_seg, s.causal};
  const float scale = static_cast<float>(s.scale);
  dispatch(t, [&](auto tag) {
    using T = decltype(tag);
    attention_backward_kernel<T><<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(
        s, scale, static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v),
        mask, static_cast<const T*>(out), lse, static_cast<const T*>(dout),
        static_cast<T*>(dq), static_cast<T*>(dk),
        static_cast<T*>(dv));
    ROTOR_CUDA_LAUNCHED("attention_backward_kernel", stream);
  });
}

void attention_merge(Float t, const AttentionShape& s, void* out_acc, float* lse_acc,
                     float* entropy_acc, const void* out_blk, const float* lse_blk,
                     const float* entropy_blk, cudaStream_t stream) {
  const int64_t rows = s.b * s.hq * s.tq;
  if (rows == 0) return;
  const bool with_entropy = entropy_acc != nullptr && entropy_blk != nullptr;
  constexpr int kMergeThreads = 256;  // 8 rows per block
  const unsigned blocks =
      static_cast<unsigned>((rows + kMergeThreads / 32 - 1) / (kMergeThreads / 32));
  dispatch(t, [&](auto tag) {
    using T = decltype(tag);
    attention_merge_kernel<T><<<blocks, kMergeThreads, 0, stream>>>(
        rows, s.tq, s.hq, s.d, static_cast<T*>(out_acc), lse_acc,
        with_entropy ? entropy_acc : nullptr, static_cast<const T*>(out_blk), lse_blk,
        with_entropy ? entropy_blk : nullptr);
    ROTOR_CUDA_LAUNCHED("attention_merge_kernel", stream);
  });
}

}  // namespace rotor::cuda
