// The memory model of a training step: the peak tensor bytes of one rank,
// by tag (kernels/memory.h), predicted from the recipe before anything is
// allocated, and the longest sequence that fits a given memory.
//
// It follows the step as model/llama.cc runs it, term by term (the names
// below are the code's), for one rank of the layout:
//
//   sizes    tp shards heads, kv heads (replicated when tp exceeds them),
//            intermediate_size and the vocabulary; cp gives the rank T / cp
//            tokens of each sequence; N = micro_batch * T / cp rows, R = N / tp
//            residual rows under sequence parallelism (else N)
//   states   parameters (f32 masters, plus the bf16 working copy), gradients
//            (f32, plus a second copy in the reduction buckets when dp x cp
//            > 1), AdamW moments (f32; over dp with ZeRO-1)
//   kept     per block, what Recompute keeps: the block input x [R, D]
//            (full), plus the attention output [N, Hq hd] and its LSE
//            [N, Hq] f32 (selective), or every activation of the block (none:
//            x, both RMSNorm outputs and rstds, q, k, v, attention output and
//            LSE, the residual h, and the MLP's gate, up and product when the
//            MLP is one tile); plus the final norm's input, output and rstd.
//            With offload the blocks' part sits in host memory instead.
//   phases   the step's transient bytes at each point that can hold the
//            peak: the last block's forward, the loss head, each part of the
//            last block's backward (rebuilding what recompute dropped, the MLP
//            backward with its tiles, the attention backward with its six
//            gradient buffers, ring buffers under cp), and the optimizer
//            (ZeRO-1's gather), and under Ulysses the group-layout copies of
//            q, k, v, out, dout and the gradients with their all-to-all
//            buffers. The peak is the largest; nothing later in
//            backward exceeds the last block's (each block frees its kept
//            tensors when done).
//
// What it counts is what the ledger counts: tensors, by their own bytes. Not
// counted: allocator rounding and caching (the CUDA caching allocator's
// fragmentation), memory kernels take outside Tensor (the CPU attention's
// per-thread score rows, BLAS and cuBLAS workspaces), the CUDA context and
// NCCL buffers (some hundreds of MB per GPU), and the process itself. A
// plan for a GPU should keep 5-10% of the device free for these.
// tests/trainer/memory_plan_test.cc checks the prediction against the
// ledger's measured peak of real steps within 10%.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "kernels/cross_entropy.h"
#include "kernels/memory.h"
#include "kernels/tensor.h"
#include "model/config.h"
#include "model/llama_block.h"
#include "trainer/recipe/recipe.h"

namespace rotor {

struct MemoryPlanInput {
  LlamaConfig config;
  DType dtype = DType::kF32;  // activations: f32 or bf16 (f32 masters either way)
  Recompute recompute = Recompute::kNone;
  int64_t tile_tokens = 0;  // 0: the MLP in one piece
  bool offload_activations = false;
  CrossEntropyChunks ce_chunks;
  bool query_scale = false;       // a logit scalar table [N] (logit_scale not none)
  bool document_masking = false;  // segment ids ride with the batch
  int64_t micro_batch = 1;        // sequences per micro-batch
  int64_t micro_batches = 1;      // per rank per step
  int64_t sequence_length = 0;    // T, the whole sequence
  int tp = 1, cp = 1, dp = 1;
  int ulysses = 1;  // Ulysses degree inside cp (parallel/ulysses_attention.h)
  bool sequence_parallel = true;
  bool zero1 = false;
  // The CPU reference kernels run the ops (device cpu or sim): bf16 tensors
  // are widened to f32 copies inside the BLAS-based ops, and on the CPU
  // device the step's host batches share the ledger.
  bool cpu_kernels = true;
  bool host_is_device = true;  // device cpu
};

struct MemoryPlan {
  std::array<int64_t, kMemoryTags> at_peak{};  // bytes by tag at the peak; offloaded: the host pool
  int64_t peak = 0;                            // every tag but offloaded
  std::string phase;                           // where the peak falls
  // Bytes of the blocks' kept activations per token of the rank (device or
  // host): how the peak grows with the sequence.
  double kept_bytes_per_token = 0;
  int64_t parameters = 0;  // parameter elements on this rank

  int64_t operator[](MemoryTag t) const { return at_peak[static_cast<size_t>(t)]; }
  // A few lines: the peak, by tag, the phase, per-token growth.
  std::string describe() const;
};

MemoryPlan plan_memory(const MemoryPlanInput& in);

// The longest sequence length, a multiple of `granule`, at most `cap`, whose
// planned peak is at most `memory` bytes (the input's other settings kept);
// 0 when not even `granule` tokens fit.
int64_t longest_fitting_sequence(MemoryPlanInput in, int64_t memory, int64_t granule, int64_t cap = int64_t{1} << 26);

// The input a resolved training recipe describes, for a world of
// `world_size` processes (dp = world / (tp * cp)). InvalidArgument when the
// world does not split into tp x cp.
absl::StatusOr<MemoryPlanInput> memory_plan_input(const LoadedRecipe& recipe, int world_size);

std::string format_bytes(int64_t bytes);  // "297.1 MB", "71.3 GB"

}  // namespace rotor
