#include "trainer/memory_plan.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "absl/strings/str_cat.h"
#include "trainer/data_stream.h"
#include "trainer/recipe/convert.h"

namespace rotor {

namespace {

// One candidate for the peak: its transient bytes and the kept activations
// on the device at that moment.
struct Phase {
  const char* name;
  int64_t transient;
  int64_t activations;
};

}  // namespace

MemoryPlan plan_memory(const MemoryPlanInput& in) {
  const LlamaConfig& c = in.config;
  const int64_t tp = in.tp, cp = in.cp, dp = in.dp;
  const int64_t d = c.hidden_size, hd = c.resolved_head_dim(), layers = c.num_hidden_layers;
  const int64_t kv_replicas = tp > 1 && c.num_key_value_heads % tp != 0 ? tp / c.num_key_value_heads : 1;
  const int64_t hq = c.num_attention_heads / tp, hkv = c.num_key_value_heads * kv_replicas / tp;
  const int64_t f = c.intermediate_size / tp, v = c.vocab_size / tp;
  const int64_t dq = hq * hd, dkv = hkv * hd;
  // Ulysses: a member holds U times the tokens for 1/U of the heads (kv
  // heads: Hkv / U, or one replicated).
  const int64_t u = std::max(1, in.ulysses), ring_size = cp / u;
  const int64_t n = in.micro_batch * (in.sequence_length / cp);  // rows of this rank
  const bool sp = tp > 1 && in.sequence_parallel;
  const int64_t r = sp ? n / tp : n;  // residual-stream rows
  const int64_t s = dtype_size(in.dtype), st = 4, m = 4;  // activation, statistic, master bytes
  const bool mlp_tiled = in.tile_tokens > 0 && in.tile_tokens < n;
  const int64_t tile = mlp_tiled ? in.tile_tokens : n;

  MemoryPlan plan;
  // States. Parameter elements of this rank (model/llama.cc's table).
  const int64_t per_layer_params = 2 * d + 2 * dq * d + 2 * dkv * d + 3 * f * d;
  const int64_t params = v * d + layers * per_layer_params + d + (c.tie_word_embeddings ? 0 : v * d);
  plan.parameters = params;
  const int64_t parameters = params * m + (in.dtype == DType::kBF16 ? params * 2 : 0);
  const int64_t gradients = params * m * (dp * cp > 1 ? 2 : 1);  // + the reduction buckets
  const int64_t shard = (params + dp - 1) / dp;
  const int64_t optimizer = 2 * m * (in.zero1 ? shard : params);

  // One block's activations (LlamaBlock::forward) and what Recompute keeps.
  const int64_t x = r * d * s, rstd = r * st, xn = n * d * s;
  const int64_t q = n * dq * s, kv = n * dkv * s, attn = n * dq * s, lse = n * hq * st, h = r * d * s;
  const int64_t mlp_kept = mlp_tiled ? 0 : 3 * n * f * s;
  const int64_t kv_group = u > 1 ? n * u * (hkv % u == 0 ? hkv / u : 1) * hd * s : kv;  // one of k, v
  const int64_t all_of_block = x + 2 * rstd + 2 * xn + q + 2 * kv + attn + lse + h + mlp_kept;
  const int64_t kept = in.recompute == Recompute::kNone   ? all_of_block
                       : in.recompute == Recompute::kFull ? x
                                                          : x + attn + lse;
  const int64_t final_norm = 2 * r * d * s + r * st + (sp ? n * d * s : 0);
  const int64_t blocks_kept = in.offload_activations ? 0 : layers * kept;
  plan.at_peak[static_cast<size_t>(MemoryTag::kOffloaded)] = in.offload_activations ? layers * kept : 0;
  plan.kept_bytes_per_token = n > 0 ? static_cast<double>(layers * kept) / static_cast<double>(n) : 0;

  // Alive for the whole step: the batch (input ids, targets, positions, and
  // segment ids; on the CPU device the step's host batches too) and the
  // logit-scalar table.
  const int64_t batch_tensors = 3 + (in.document_masking ? 1 : 0);
  const int64_t batch = batch_tensors * n * 4 * (in.host_is_device ? in.micro_batches + 1 : 1);
  const int64_t always = batch + (in.query_scale ? n * s : 0);

  // CPU kernels widen bf16 operands to f32 copies inside an op.
  const bool widen = in.cpu_kernels && in.dtype == DType::kBF16;
  const auto wide = [&](int64_t bytes) { return widen ? bytes / s * 4 : 0; };

  std::vector<Phase> phases;
  // The last block's forward (its MLP): every earlier block's kept tensors,
  // this block's activations so far, the output y and the MLP's tile.
  {
    const int64_t mlp_tiles = mlp_tiled ? 3 * tile * f * s : 0;
    const int64_t partial = sp ? n * d * s : 0;  // the row-parallel down projection's partial sums
    const int64_t earlier = in.offload_activations ? 0 : (layers - 1) * kept;
    phases.push_back({"forward of the last block", all_of_block + x + mlp_tiles + partial, earlier});
  }
  // The loss head (output projection + cross-entropy, fused with its
  // backward at tp = 1): token losses, LSEs and their gradients [N] f32, the
  // hidden-state gradient [N, D], and one logits tile in f32.
  const int64_t head_vectors = 3 * n * st;
  const int64_t head_dh = n * d * s + (sp ? r * d * s : 0);
  {
    int64_t tile_bytes;
    if (tp == 1) {
      const int64_t rows = std::clamp<int64_t>(in.ce_chunks.fused_tile_elements / std::max<int64_t>(v, 1), 1,
                                               std::max<int64_t>(n, 1));
      tile_bytes = rows * v * 4 + wide(n * d * s) * 2 + wide(v * d * s);
    } else {  // vocabulary-parallel: forward then backward tiles, and the slices' combine
      tile_bytes = std::min(in.ce_chunks.tokens, n) * std::min(in.ce_chunks.vocab, v) * 4 + 3 * n * st +
                   wide(n * d * s) * 2 + wide(v * d * s);
    }
    phases.push_back({"loss head", head_vectors + head_dh + tile_bytes, blocks_kept + final_norm});
  }
  // The last block's backward. Live throughout: the head's outputs, the
  // incoming and outgoing residual gradients, and the block's activations
  // (the part recompute dropped is rebuilt, the offloaded part brought back:
  // transient either way).
  {
    const int64_t own = in.offload_activations ? all_of_block : all_of_block - kept;
    const int64_t base = head_vectors + head_dh + 2 * x + own;
    const int64_t acts = blocks_kept + final_norm;
    // Rebuilding: the forward's output y and the MLP tile.
    if (in.recompute != Recompute::kNone)
      phases.push_back({"rebuild in the last block's backward",
                        base + x + (mlp_tiled ? 3 * tile * f * s : 0) + (sp ? n * d * s : 0), acts});
    // MLP backward: the gathered output gradient (SP), the input gradient
    // partial sums, and per tile dact, dgate, dup (and gate, up, act again
    // when tiled).
    const int64_t dy_full = sp ? n * d * s : 0;
    const int64_t mlp_grads = mlp_tiled ? 6 * tile * f * s : 3 * n * f * s;
    phases.push_back({"MLP backward of the last block", base + dy_full + xn + mlp_grads, acts});
    // Attention backward: dxn2, dh (and their SP copies), dattn, dq, dk, dv
    // while the kernel runs, with the ring's blocks under cp (after the first
    // hop three blocks of k, v, positions (and segment ids), dk, dv at once,
    // the first's dk, dv about to go); then dxn1 once the ring is done.
    const int64_t grads = dy_full + xn + (sp ? r * d * s : 0) + x + (sp ? n * d * s : 0) + 2 * n * dq * s + 2 * n * dkv * s;
    const int64_t ids = n * 4 * (in.document_masking ? 2 : 1) * u;  // positions (and segment ids) of a block
    const int64_t ring = ring_size > 1 ? 10 * kv_group + 2 * ids : 0;
    // CPU bf16: f32 copies of q, k, v, out, dout and of the dq, dk, dv outputs.
    const int64_t widened = wide(2 * q + 2 * kv + 2 * attn + 2 * kv);
    // Ulysses: q, k, v, out, dout, lse in the group layout, the group's
    // gradients, their positions, and one all-to-all's send and receive
    // buffers (the largest: q's).
    const int64_t group = u > 1 ? 3 * q + 2 * kv_group * 2 + n * hq * st + ids + 2 * q : 0;
    phases.push_back({"attention backward of the last block", base + grads + ring + widened + group, acts});
    phases.push_back({"input gradient of the last block", base + grads + xn, acts});
  }
  // Ring attention forward (cp > 1): the partial output and LSE, and after
  // the first hop three k, v, positions blocks (one of them the rank's own);
  // in the last block's forward, and in its rebuild under full recompute.
  if (cp > 1) {
    const int64_t ids = n * 4 * (in.document_masking ? 2 : 1) * u;
    const int64_t ring = n * dq * s + n * hq * st + (ring_size > 1 ? 4 * kv_group + 2 * ids : 0) +
                         (u > 1 ? q + 2 * kv_group + ids + 2 * q : 0);  // Ulysses: group q, k, v and buffers
    const int64_t to_attention = x + rstd + xn + q + 2 * kv + attn + lse;
    const int64_t earlier = in.offload_activations ? 0 : (layers - 1) * kept;
    phases.push_back({"ring attention forward of the last block", to_attention + x + ring, earlier});
    if (in.recompute == Recompute::kFull)
      phases.push_back({"ring attention in the last block's rebuild",
                        head_vectors + head_dh + 2 * x + x + to_attention - (in.offload_activations ? 0 : x) + ring,
                        blocks_kept + final_norm});
  }
  // The optimizer: activations gone; ZeRO-1 packs its shard and gathers all.
  if (in.zero1 && dp > 1) phases.push_back({"optimizer step (ZeRO-1 gather)", shard * m + dp * shard * m, 0});

  const Phase* top = &phases[0];
  for (const Phase& ph : phases)
    if (ph.transient + ph.activations > top->transient + top->activations) top = &ph;
  plan.phase = top->name;
  plan.at_peak[static_cast<size_t>(MemoryTag::kParameters)] = parameters;
  plan.at_peak[static_cast<size_t>(MemoryTag::kGradients)] = gradients;
  plan.at_peak[static_cast<size_t>(MemoryTag::kOptimizer)] = optimizer;
  plan.at_peak[static_cast<size_t>(MemoryTag::kActivations)] = top->activations;
  plan.at_peak[static_cast<size_t>(MemoryTag::kTransient)] = top->transient + always;
  for (int i = 0; i < kMemoryTags; ++i)
    if (i != static_cast<int>(MemoryTag::kOffloaded)) plan.peak += plan.at_peak[static_cast<size_t>(i)];
  return plan;
}

std::string format_bytes(int64_t bytes) {
  const double b = static_cast<double>(bytes);
  char buf[32];
  if (b >= 1e9) std::snprintf(buf, sizeof buf, "%.2f GB", b / 1e9);
  else std::snprintf(buf, sizeof buf, "%.1f MB", b / 1e6);
  return buf;
}

std::string MemoryPlan::describe() const {
  std::string out = absl::StrCat("predicted peak ", format_bytes(peak), " per rank, in the ", phase, "\n");
  for (MemoryTag t : {MemoryTag::kParameters, MemoryTag::kGradients, MemoryTag::kOptimizer, MemoryTag::kActivations,
                      MemoryTag::kTransient, MemoryTag::kOffloaded}) {
    if (t == MemoryTag::kOffloaded && (*this)[t] == 0) continue;
    char line[96];
    std::snprintf(line, sizeof line, "  %-12s %12s%s\n", memory_tag_name(t), format_bytes((*this)[t]).c_str(),
                  t == MemoryTag::kOffloaded ? "  (host memory, not in the peak)" : "");
    out += line;
  }
  char per[96];
  std::snprintf(per, sizeof per, "  kept activations: %.0f bytes per token of the rank\n", kept_bytes_per_token);
  out += per;
  return out;
}

int64_t longest_fitting_sequence(MemoryPlanInput in, int64_t memory, int64_t granule, int64_t cap) {
  auto fits = [&](int64_t t) {
    in.sequence_length = t;
    return plan_memory(in).peak <= memory;
  };
  if (!fits(granule)) return 0;
  // The peak grows with T: the largest multiple of granule that fits.
  int64_t lo = 1, hi = std::max<int64_t>(1, cap / granule);  // in granules; lo fits
  if (fits(hi * granule)) return hi * granule;
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    (fits(mid * granule) ? lo : hi) = mid;
  }
  return lo * granule;
}

absl::StatusOr<MemoryPlanInput> memory_plan_input(const LoadedRecipe& recipe, int world_size) {
  const recipe::Recipe& r = recipe.proto;
  MemoryPlanInput in;
  in.config = recipe.model;
  const LlamaOptions o = recipe.training_options();
  in.dtype = o.dtype;
  in.recompute = o.recompute;
  in.tile_tokens = o.tile_tokens;
  in.offload_activations = o.offload_activations;
  in.ce_chunks = o.ce_chunks;
  in.query_scale = o.logit_scale.kind != LogitScaleKind::kNone;
  const BatchShape shape = BatchShape::of(r);
  in.document_masking = shape.document_masking;
  in.micro_batch = shape.micro;
  in.sequence_length = shape.sequence_length;
  in.tp = static_cast<int>(r.parallel().tp());
  in.cp = static_cast<int>(r.parallel().cp());
  in.ulysses = static_cast<int>(std::max<int64_t>(1, r.parallel().ulysses()));
  if (world_size < 1 || world_size % (in.tp * in.cp) != 0)
    return absl::InvalidArgumentError(absl::StrCat("a world of ", world_size, " ranks does not split into parallel.tp (",
                                                   in.tp, ") x parallel.cp (", in.cp, ")"));
  in.dp = world_size / (in.tp * in.cp);
  in.micro_batches = std::max<int64_t>(1, shape.global / (in.dp * std::max<int64_t>(1, shape.micro)));
  in.sequence_parallel = r.parallel().sequence_parallel();
  in.zero1 = r.parallel().zero1();
  const DeviceType device = recipe_device_type(r);
  in.cpu_kernels = device != DeviceType::kCuda;
  in.host_is_device = device == DeviceType::kCpu;
  return in;
}

}  // namespace rotor
