// comm_volume_bench: bytes each rank sends in one training step, per
// communicator, measured (CommStats) against the analytic count, for every
// (tp, cp, ulysses) layout the world size allows among (1,1) (1,2) (1,4) (2,1)
// (2,2) and the Ulysses ones (cp 2 u 2) (cp 4 u 2) (cp 4 u 4) (tp 2 cp 2 u 2)
// (dp = world / (tp cp)). Run under mpirun:
//
//   OMP_NUM_THREADS=1 mpirun --allow-run-as-root --oversubscribe -np 4 build/bin/comm_volume_bench
//   options: --seq 1024 --batch 1 --segments (document masking, docs of 300 tokens)
//            --skip-tp (leave out the tp > 1 layouts)
//
// A step: forward_backward of this rank's batch (B rows of T tokens per dp
// replica, this rank's zigzag cp shard), then the gradient all_reduce over
// dp_cp (GradientReducer), then one ZeRO-1 step (parallel/zero.h: all_gather
// of the updated parameter ranges over dp). Every communicator's stats are
// reset before and read after. The table (rank 0's numbers; the layouts are
// symmetric) is: bytes sent per rank per step, analytic bytes, measured/analytic.
//
// Analytic counts, per rank per step (es = bytes per element, 4 for f32;
// CommStats counts the algorithm-independent payload: all_reduce 2(n-1)/n of
// the tensor, all_gather/reduce_scatter (n-1)/n of the full tensor, a send its
// bytes; parallel/communicator.h):
//
//   CP (ring attention, parallel/ring_attention.h; Liu et al. 2023, "Ring
//   Attention with Blockwise Transformers"), per layer, Tl = T / cp tokens
//   per rank, Hkv/tp key-value heads per rank:
//     kv  = 2 * B * Tl * (Hkv/tp) * hd * es        (one K and one V block)
//     idx = B * Tl * 4 * (1 + segments)            (i32 positions, segment ids)
//     forward   (cp-1) * (kv + idx)
//     backward  (cp-1) * (kv + idx) + cp * kv      (K, V travel again; dK, dV make cp hops)
//   plus once per step the all_reduce (max) of the largest position, one i64
//   (model/llama.cc: dynamic NTK / LongRoPE need the whole sequence's length):
//     2 (cp-1)/cp * 8
//
//   Ulysses x ring (parallel.ulysses = U > 1, parallel/ulysses_attention.h;
//   Jacobs et al. 2023 "DeepSpeed Ulysses", Fang & Zhao 2024 "USP"), per
//   layer, with (U-1)/U of every all-to-all's send buffer leaving the rank:
//     Q   = B * Tl * (Hq/tp) * hd * es             (q, out, dout, dq: all heads, own tokens)
//     K   = U * B * Tl * c * hd * es               (k, v, dk, dv: c = Hkv/tp/U kv heads,
//                                                   or 1 when replicated)
//     S   = B * (Hq/tp) * Tl * 4                   (the f32 LSE)
//     ulysses forward   (U-1)/U (2Q + 2K + S) + (U-1) idx   (q, k, v in; out, lse back;
//                                                            the group's positions all-gathered)
//     ulysses backward  (U-1)/U (4Q + 4K + S) + (U-1) idx   (q, k, v, out, dout, lse in;
//                                                            dq, dk, dv back)
//   and the ring of R = cp / U ranks on the group layout (U Tl tokens, c kv
//   heads): the CP formulas above with kv = 2 B U Tl c hd es, idx = U idx.
//
//   DP (gradients over dp_cp, n = dp * cp ranks, ring all_reduce; Patarasuk &
//   Yuan 2009, as NCCL/Megatron's DDP):
//     2 (n-1)/n * (bytes of this rank's gradients)
//
//   ZeRO-1 (Rajbhandari et al. 2020, P_os): all_gather of the updated
//   parameters over dp: (dp-1)/dp * (parameter bytes padded to a multiple of dp).
//
//   TP with sequence parallelism (Megatron-LM; Korthikanti et al. 2022,
//   "Reducing Activation Recomputation in Large Transformer Models", Sec. 4.2.2:
//   g/g-bar = all-gather / reduce-scatter), A = B * Tl * D * es the activations
//   of the whole tp group's rows, each op moving (tp-1)/tp * A per rank:
//     per layer forward   2 all-gathers (before qkv, before gate/up)
//                        + 2 reduce-scatters (after o, after down)
//     per layer backward  the conjugates: 2 reduce-scatters + 2 all-gathers
//     so per layer 8 (tp-1)/tp * A, the same as the 4 all-reduces of plain TP
//     (2 forward, 2 backward, each 2 (tp-1)/tp * A).
//   Plus, outside the layers (rotor's vocab-parallel embedding and head,
//   parallel/tensor_parallel.h): embedding output reduce-scatter (fwd) and
//   all-gather (bwd), final norm output all-gather (fwd) and reduce-scatter
//   (bwd): 4 (tp-1)/tp * A; the vocab-parallel cross-entropy's per-token max
//   of the slice LSEs and the (sum-exp, target logit) pairs, all_reduces of
//   3 * B * Tl f64 values (parallel/tensor_parallel.cc), 2 (tp-1)/tp * 3 B Tl * 8
//   in the forward (the backward needs none); and under SP the norm weights'
//   gradients summed over tp, 2 (tp-1)/tp * (2L+1) * D * es.
//   The tp rows are analytic only where the model runs tp; a model that
//   refuses tp > 1, or runs it replicated (no tp traffic), gets
//   "tp: not implemented yet".
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "kernels/random.h"
#include "model/llama.h"
#include "parallel/context.h"
#include "parallel/data_parallel.h"
#include "parallel/mpi_communicator.h"
#include "parallel/process_grid.h"
#include "parallel/ring_attention.h"
#include "parallel/zero.h"

namespace rotor {
namespace {

struct Options {
  int64_t seq = 1024;
  int64_t batch = 1;
  bool segments = false;
  bool skip_tp = false;
};

LlamaConfig bench_config() {
  LlamaConfig c;
  c.vocab_size = 4096;
  c.hidden_size = 256;
  c.intermediate_size = 688;
  c.num_hidden_layers = 4;
  c.num_attention_heads = 8;
  c.num_key_value_heads = 4;
  c.head_dim = 32;
  c.initializer_range = 0.02;
  return c;
}

Batch make_batch(const Options& o, int dp_rank, const LlamaConfig& c) {
  Batch b;
  const int64_t rows = o.batch, t = o.seq;
  b.input_ids = Tensor::empty({rows, t}, DType::kI32);
  b.targets = Tensor::empty({rows, t}, DType::kI32);
  b.positions = Tensor::empty({rows, t}, DType::kI32);
  if (o.segments) b.segments = Tensor::empty({rows, t}, DType::kI32);
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < t; ++j) {
      const int64_t at = i * t + j;
      b.input_ids.data<int32_t>()[at] =
          static_cast<int32_t>(mix64(1000003 * (dp_rank + 1) + at) % static_cast<uint64_t>(c.vocab_size));
      const int64_t doc = o.segments ? j / 300 : 0;
      b.positions.data<int32_t>()[at] = static_cast<int32_t>(j - doc * 300);
      if (o.segments) b.segments.data<int32_t>()[at] = static_cast<int32_t>(doc);
    }
    for (int64_t j = 0; j < t; ++j) {
      const int64_t at = i * t + j;
      b.targets.data<int32_t>()[at] = j + 1 == t ? -1 : b.input_ids.data<int32_t>()[at + 1];
    }
  }
  return b;
}

struct Row {
  std::string comm;
  double measured = 0, analytic = 0;
  std::string note;
};

void print_row(const std::string& layout, const Row& r) {
  if (!r.note.empty()) {
    std::printf("| %-13s | %-7s | %14s | %14s | %7s | %s\n", layout.c_str(), r.comm.c_str(), "-", "-",
                "-", r.note.c_str());
    return;
  }
  char ratio[32];
  if (r.analytic > 0) {
    std::snprintf(ratio, sizeof ratio, "%.4f", r.measured / r.analytic);
  } else {
    std::snprintf(ratio, sizeof ratio, "%s", r.measured == 0 ? "0=0" : "inf");
  }
  std::printf("| %-13s | %-7s | %14.0f | %14.0f | %7s |\n", layout.c_str(), r.comm.c_str(), r.measured,
              r.analytic, ratio);
}

// One layout; prints its rows on world rank 0. Collective over `world`.
void run_layout(Communicator& world, int tp, int cp, int u, const Options& o) {
  const int dp = world.size() / (tp * cp);
  const std::string layout = "tp" + std::to_string(tp) + " cp" + std::to_string(cp) +
                             (u > 1 ? "u" + std::to_string(u) : std::string()) + " dp" + std::to_string(dp);
  const bool root = world.rank() == 0;
  if (tp > 1 && o.skip_tp) {
    if (root) print_row(layout, {"tp", 0, 0, "skipped (--skip-tp)"});
    return;
  }
  auto grid = ProcessGrid::create(world.split(0, world.rank(), "world"), tp, cp, u);
  if (!grid.ok()) {
    if (root) print_row(layout, {"-", 0, 0, std::string(grid.status().message())});
    return;
  }
  const ParallelContext par = ParallelContext::of(**grid, true);
  const LlamaConfig c = bench_config();
  LlamaOptions lo;
  lo.dtype = DType::kF32;
  lo.parallel = par;
  auto model = LlamaModel::create(c, lo);
  if (!model.ok()) {
    // Deterministic from the config: the same on every rank.
    if (root) {
      print_row(layout, {"tp", 0, 0,
                         "tp: not implemented yet (LlamaModel::create: " +
                             std::string(model.status().message()) + ")"});
    }
    return;
  }
  model->init_weights(1);
  model->zero_grad();

  const Batch mine = shard_for_context(make_batch(o, par.dp_rank(), c), par);
  std::vector<Tensor> grads;
  int64_t param_elems = 0;
  for (Parameter& p : model->parameters()) {
    grads.push_back(p.grad);
    param_elems += p.value.numel();
  }
  GradientReducer reducer(grads, par.dp_cp);
  AdamWHyper hyper;
  hyper.weight_decay = 0.1;
  ShardedAdamW zero(model->parameters(), hyper, par.dp);

  Communicator* comms[] = {&(*grid)->tp(), &(*grid)->cp(), &(*grid)->dp(), &(*grid)->dp_cp(),
                           &(*grid)->world(), &(*grid)->ulysses(), &(*grid)->ring()};
  for (Communicator* cm : comms) cm->reset_stats();
  world.barrier();
  const int64_t global_tokens = o.batch * (o.seq - 1) * dp;
  model->forward_backward(mine, 1.0 / static_cast<double>(global_tokens));
  reducer.reduce();
  zero.step(model->parameters(), 1e-4, 1.0);

  const double es = 4;  // f32
  const double B = static_cast<double>(o.batch), Tl = static_cast<double>(o.seq) / cp;
  const double L = static_cast<double>(c.num_hidden_layers), D = static_cast<double>(c.hidden_size);
  const double hd = static_cast<double>(c.resolved_head_dim());
  const double hkv = static_cast<double>(c.num_key_value_heads) / tp;
  const double idx = B * Tl * 4 * (o.segments ? 2 : 1);
  // The ring runs over R = cp / U ranks holding U Tl tokens and c kv heads each.
  const double hq = static_cast<double>(c.num_attention_heads) / tp;
  const double cu = u > 1 ? (static_cast<int64_t>(hkv) % u == 0 ? hkv / u : 1) : hkv;
  const int ring = cp / u;
  const double kv_r = 2 * B * u * Tl * cu * hd * es, idx_r = u * idx;
  const double ring_analytic = L * ((ring - 1) * (kv_r + idx_r) * 2 + (ring > 1 ? ring : 0) * kv_r);
  const double fu = static_cast<double>(u - 1) / u;
  const double Q = B * Tl * hq * hd * es, K = u * B * Tl * cu * hd * es, S = B * hq * Tl * 4;
  const double ulysses_analytic = u > 1 ? L * (fu * (2 * Q + 2 * K + S) + (u - 1) * idx +
                                               fu * (4 * Q + 4 * K + S) + (u - 1) * idx)
                                        : 0;
  const double cp_analytic = (u > 1 ? 0 : ring_analytic) + 2.0 * (cp - 1) / cp * 8;
  const double n = static_cast<double>(dp) * cp;
  const double grad_bytes = static_cast<double>(param_elems) * es;
  const double dp_analytic = 2 * (n - 1) / n * grad_bytes;
  const double padded = static_cast<double>(zero.shard_elements()) * dp * es;
  const double zero_analytic = static_cast<double>(dp - 1) / dp * padded;
  const double A = B * Tl * D * es, ft = static_cast<double>(tp - 1) / tp;
  const double tp_analytic = tp > 1 ? 8 * L * ft * A + 4 * ft * A + 2 * ft * 3 * B * Tl * 8 +
                                          2 * ft * (2 * L + 1) * D * es
                                    : 0;

  const CommStats& st_tp = (*grid)->tp().stats();
  std::vector<Row> rows;
  if (tp > 1 && st_tp.total() == 0) {
    rows.push_back({"tp", 0, 0, "tp: not implemented yet (the model ran replicated: no tp traffic)"});
  } else {
    rows.push_back({"tp", static_cast<double>(st_tp.total()), tp_analytic, ""});
  }
  rows.push_back({"cp", static_cast<double>((*grid)->cp().stats().total()), cp_analytic, ""});
  if (u > 1) {
    rows.push_back({"ulysses", static_cast<double>((*grid)->ulysses().stats().total()), ulysses_analytic, ""});
    rows.push_back({"ring", static_cast<double>((*grid)->ring().stats().total()), ring_analytic, ""});
  }
  rows.push_back({"dp_cp", static_cast<double>((*grid)->dp_cp().stats().total()), dp_analytic, ""});
  rows.push_back({"dp", static_cast<double>((*grid)->dp().stats().total()), zero_analytic, ""});
  rows.push_back({"world", static_cast<double>((*grid)->world().stats().total()), 0, ""});
  if (root) {
    for (const Row& r : rows) print_row(layout, r);
    std::fflush(stdout);
  }
}

}  // namespace
}  // namespace rotor

int main(int argc, char** argv) {
  using namespace rotor;
  auto world = mpi_world(&argc, &argv, 600);
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--seq" && i + 1 < argc) {
      o.seq = std::atoll(argv[++i]);
    } else if (a == "--batch" && i + 1 < argc) {
      o.batch = std::atoll(argv[++i]);
    } else if (a == "--segments") {
      o.segments = true;
    } else if (a == "--skip-tp") {
      o.skip_tp = true;
    } else {
      if (world->rank() == 0) std::fprintf(stderr, "comm_volume_bench: unknown argument %s\n", a.c_str());
      world.reset();
      mpi_finalize();
      return 2;
    }
  }
  if (world->rank() == 0) {
    const LlamaConfig c = bench_config();
    std::printf("comm_volume_bench: world %d; Llama hidden %lld, %lld layers, %lld heads, %lld kv heads, "
                "vocab %lld, seq %lld, batch %lld per dp rank, f32%s\n",
                world->size(), static_cast<long long>(c.hidden_size),
                static_cast<long long>(c.num_hidden_layers),
                static_cast<long long>(c.num_attention_heads),
                static_cast<long long>(c.num_key_value_heads), static_cast<long long>(c.vocab_size),
                static_cast<long long>(o.seq), static_cast<long long>(o.batch),
                o.segments ? ", document masking" : "");
    std::printf("bytes sent per rank per step (rank 0), by communicator; analytic formulas in the source\n");
    std::printf("| %-13s | %-7s | %14s | %14s | %7s |\n", "layout", "comm", "measured", "analytic",
                "ratio");
    std::printf("|---------------|---------|----------------|----------------|---------|\n");
  }
  const int layouts[][3] = {{1, 1, 1}, {1, 2, 1}, {1, 4, 1}, {2, 1, 1}, {2, 2, 1},
                            {1, 2, 2}, {1, 4, 2}, {1, 4, 4}, {2, 2, 2}};
  for (const auto& l : layouts) {
    const int tp = l[0], cp = l[1], u = l[2];
    if (world->size() % (tp * cp) != 0) continue;
    run_layout(*world, tp, cp, u, o);
  }
  world.reset();
  mpi_finalize();
  return 0;
}
