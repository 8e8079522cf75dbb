// cuBLASLt GEMM. See matmul.h.
#include "kernels/cuda/matmul.h"

#include <cublasLt.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <tuple>
#include <utility>

#include "kernels/cuda/cuda_check.h"

namespace rotor::cuda {
namespace {

cudaDataType_t data_type(Float f) { return f == Float::kF32 ? CUDA_R_32F : CUDA_R_16BF; }

// The heuristic's first algorithm per problem shape and pointer alignment,
// cached: asking cuBLASLt costs tens of microseconds, a Llama step repeats a
// handful of shapes.
//
// Alignment: cuBLASLt's heuristic assumes 256-byte aligned A/B/C/D unless
// told otherwise (CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_*_BYTES, default 256),
// and may return an algorithm that needs it. Tensors of the caching allocator
// start at cudaMalloc'd (256-byte aligned) blocks, but narrow() views need not
// (the cross-entropy tiles start at token r0 of h and vocabulary row c0 of w,
// (r0 or c0) * D * 2 bytes in: 128-byte aligned for D = 16 and c0 = 300, only
// 2-byte aligned for odd D). A plan found for an aligned call and reused for a
// misaligned view of the same shape would fail (CUBLAS_STATUS_NOT_SUPPORTED)
// or load wider than the address allows. So the heuristic is told each
// pointer's actual alignment, and the alignments are part of the key.
using Key = std::tuple<int, int, int, int64_t, int64_t, int64_t, bool, bool, int64_t, int64_t, int64_t, bool,
                       uint32_t, uint32_t, uint32_t>;

// The largest power of two (at most 256, cuBLASLt's default assumption) that
// divides the address.
uint32_t alignment_of(const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  uint32_t align = 256;
  while (align > 1 && a % align != 0) align /= 2;
  return align;
}

// Alignments (bytes) of the operands as the plan sees them: a, b (ours) and c (C and D).
struct Alignment {
  uint32_t a = 256, b = 256, c = 256;
};

struct Plan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
};

struct PlanCache {
  std::mutex mu;
  std::map<Key, Plan> plans;
};

PlanCache& plan_cache() {
  static PlanCache* cache = new PlanCache();  // lives as long as the process (like the handles it uses)
  return *cache;
}

// Column-major layout of a row-major matrix stored [rows, cols] with leading dimension ld.
cublasLtMatrixLayout_t layout(Float f, int64_t rows, int64_t cols, int64_t ld) {
  cublasLtMatrixLayout_t l = nullptr;
  ROTOR_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&l, data_type(f), static_cast<uint64_t>(cols),
                                                static_cast<uint64_t>(rows), ld));
  return l;
}

Plan make_plan(DeviceContext& ctx, Float ab, Float ct, int64_t m, int64_t n, int64_t k, bool trans_a, bool trans_b,
               int64_t lda, int64_t ldb, int64_t ldc, bool accumulate, Alignment al) {
  Plan p;
  ROTOR_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  // Swapped operands: first = b, second = a (see matmul.h).
  const cublasOperation_t first = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t second = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  ROTOR_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &first, sizeof(first)));
  ROTOR_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &second, sizeof(second)));
  // Stored shapes (row-major): b is [k, n] or [n, k]; a is [m, k] or [k, m]; c is [m, n].
  p.a = layout(ab, trans_b ? n : k, trans_b ? k : n, ldb);
  p.b = layout(ab, trans_a ? k : m, trans_a ? m : k, lda);
  p.c = layout(ct, m, n, ldc);
  cublasLtMatmulPreference_t pref = nullptr;
  ROTOR_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const uint64_t ws = ctx.workspace_bytes;
  ROTOR_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                                          sizeof(ws)));
  // cuBLASLt's A is our b and its B our a (swapped operands); C and D are c.
  const std::pair<cublasLtMatmulPreferenceAttributes_t, uint32_t> aligns[] = {
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, al.b},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, al.a},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, al.c},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, al.c}};
  for (const auto& [attr, bytes] : aligns)
    ROTOR_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, attr, &bytes, sizeof(bytes)));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  ROTOR_CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(ctx.lt, p.op, p.a, p.b, p.c, p.c, pref, 1, &result, &found));
  ROTOR_CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
  ROTOR_CHECK(found > 0) << "cuBLASLt has no algorithm for a " << m << "x" << n << "x" << k << " GEMM (trans "
                         << trans_a << trans_b << ", accumulate " << accumulate << ", alignment of a/b/c "
                         << al.a << "/" << al.b << "/" << al.c << " bytes)";
  p.algo = result.algo;
  return p;
}

}  // namespace

void gemm(DeviceContext& ctx, Float ab, const void* a, const void* b, Float ct, void* c, int64_t m, int64_t n,
          int64_t k, bool trans_a, bool trans_b, int64_t lda, int64_t ldb, int64_t ldc, double alpha, double beta) {
  if (m == 0 || n == 0) return;
  const bool accumulate = beta != 0.0;
  const Alignment al{alignment_of(a), alignment_of(b), alignment_of(c)};
  const Key key{ctx.device, static_cast<int>(ab), static_cast<int>(ct), m, n, k, trans_a, trans_b, lda, ldb, ldc,
                accumulate, al.a, al.b, al.c};
  Plan plan;
  {
    PlanCache& cache = plan_cache();
    std::lock_guard<std::mutex> lock(cache.mu);
    auto it = cache.plans.find(key);
    if (it == cache.plans.end()) {
      Plan p = make_plan(ctx, ab, ct, m, n, k, trans_a, trans_b, lda, ldb, ldc, accumulate, al);
      it = cache.plans.emplace(key, p).first;
    }
    plan = it->second;
  }
  const float alpha_f = static_cast<float>(alpha), beta_f = static_cast<float>(beta);
  ROTOR_CUBLAS_CHECK(cublasLtMatmul(ctx.lt, plan.op, &alpha_f, b, plan.a, a, plan.b, &beta_f, c, plan.c, c, plan.c,
                                    &plan.algo, ctx.workspace, ctx.workspace_bytes, ctx.stream));
  ROTOR_CUDA_LAUNCHED("cublasLtMatmul", ctx.stream);
}

}  // namespace rotor::cuda
