// ring_model_bench: a performance model (not a measurement) of whether the
// communication of context parallelism (ring attention) and of tensor
// parallelism with sequence parallelism hides behind compute, for Llama-2-7B
// (hidden 4096, 32 heads, 32 kv heads, head_dim 128, FFN 11008, bf16) at 32K
// and 128K tokens. Pure C++; runs on the CPU in milliseconds.
//
//   build/bin/ring_model_bench [--attn-fwd-tflops F] [--attn-bwd-tflops F]
//       [--gemm-tflops F] [--link-gbps G] [--link-eff E] [--latency-us L]
//       [--dkv-bytes 4|2] [--ib-gbps G] [--measured-csv FILE]
//
// Inputs: single-GPU kernel throughputs and the link bandwidth. The defaults
// are ASSUMED, NOT MEASURED (H100 SXM class, FlashAttention-2 class kernels,
// NVLink 4 at 450 GB/s per direction, 80 % of it reached by NCCL):
//   attention forward 350 TFLOP/s, attention backward 250 TFLOP/s, GEMM 600 TFLOP/s.
// rotor's own CUDA attention kernel has never run on a GPU; until it has been
// measured, give its numbers with the flags or with --measured-csv, a file of
// lines "kernel,tflops[,tokens]" (kernel: attn_fwd, attn_bwd or gemm; '#'
// comments and a header line starting with "kernel" are skipped). With a
// tokens column, the row whose tokens is nearest to the block size in use is
// taken (attention throughput grows with the block).
//
// Ring attention (parallel/ring_attention.h), zigzag sharding: T tokens, cp
// ranks, 2 cp chunks of c = T / (2 cp) tokens; rank r holds chunks r and
// 2cp-1-r. At every ring step each rank computes exactly two c x c blocks of
// the causal score matrix (step 0: two half-masked diagonal blocks plus one
// full block = two blocks of work; later steps: two unmasked blocks, either
// both local chunks against the visitor's early chunk or the late local chunk
// against both visitor chunks), so the load is balanced.
//   FLOPs of one c x c block, all heads:  4 c^2 hd H        (QK^T and PV, 2 FLOPs per MAC)
//   forward step:   2 blocks = 8 c^2 hd H
//   backward step:  2.5 x forward (recompute QK^T, dP = dO V^T, dV, dQ, dK: 5 matmuls vs 2)
//   forward step sends K and V of 2c tokens:   2 * 2c * Hkv * hd * 2 bytes (bf16)
//   backward step sends K, V and the dK, dV accumulators (--dkv-bytes each, 4 = fp32)
// A step hides its transfer when transfer <= compute (send to rank+1 and
// receive from rank-1 use the two directions of the links). Forward has cp-1
// transfers and cp compute steps; backward cp-1 of K/V and cp of dK/dV.
// Break-even block: compute grows with c^2 and the transfer with c, so the
// forward transfer hides once c >= (Hkv / H) * F_attn_fwd / B_link
// (tokens per chunk), the backward once c >= 4 Hkv (2 + dkv) F_attn_bwd / (20 H B).
//
// Tensor parallel with sequence parallelism (Megatron; Korthikanti et al.
// 2022): per layer forward, all-gather of the [T/tp, D] shards before qkv and
// before gate/up, reduce-scatter of the [T, D] partial sums after o and after
// down; each moves (tp-1)/tp * T * D * 2 bytes per rank (ring). Backward: the
// conjugates, the same volumes. Compared with the GEMM each collective feeds or
// follows (FLOPs 2 * T * in * out / tp forward, twice that backward): the
// collective hides only if overlapped with that GEMM (Megatron's
// tp-comm-overlap, chunked); rotor issues them back to back, so the "exposed"
// column is what a step pays today.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace {

struct Model {
  const char* name = "Llama-2-7B";
  double hidden = 4096, heads = 32, kv_heads = 32, head_dim = 128, ffn = 11008, layers = 32;
  double bytes = 2;  // bf16
};

struct Rate {
  double tflops = 0;
  double tokens = 0;  // block size it was measured at (0: any)
};

struct Inputs {
  std::vector<Rate> attn_fwd{{350, 0}}, attn_bwd{{250, 0}}, gemm{{600, 0}};
  bool measured = false;
  double link_gbps = 450;   // GB/s per direction
  double link_eff = 0.8;    // fraction of it NCCL reaches
  double latency_us = 10;   // per transfer / collective
  double dkv_bytes = 4;     // dK, dV accumulators travel in fp32
};

double pick(const std::vector<Rate>& rates, double tokens) {
  const Rate* best = &rates.front();
  for (const Rate& r : rates) {
    if (r.tokens > 0 && std::fabs(std::log(r.tokens / tokens)) <
                            std::fabs(std::log((best->tokens > 0 ? best->tokens : 1e30) / tokens))) {
      best = &r;
    }
  }
  return best->tflops * 1e12;
}

bool read_csv(const std::string& path, Inputs& in) {
  std::ifstream f(path);
  if (!f) {
    std::fprintf(stderr, "ring_model_bench: cannot open %s\n", path.c_str());
    return false;
  }
  std::vector<Rate> fwd, bwd, gemm;
  std::string line;
  int n = 0;
  while (std::getline(f, line)) {
    ++n;
    if (line.empty() || line[0] == '#' || line.rfind("kernel", 0) == 0) continue;
    std::stringstream ss(line);
    std::string kernel, tflops, tokens;
    std::getline(ss, kernel, ',');
    std::getline(ss, tflops, ',');
    std::getline(ss, tokens, ',');
    char* end = nullptr;
    const double v = std::strtod(tflops.c_str(), &end);
    if (end == tflops.c_str() || !(v > 0)) {
      std::fprintf(stderr, "ring_model_bench: %s:%d: '%s' is not kernel,tflops[,tokens]\n",
                   path.c_str(), n, line.c_str());
      return false;
    }
    const Rate r{v, tokens.empty() ? 0 : std::atof(tokens.c_str())};
    if (kernel == "attn_fwd") fwd.push_back(r);
    else if (kernel == "attn_bwd") bwd.push_back(r);
    else if (kernel == "gemm") gemm.push_back(r);
    else {
      std::fprintf(stderr, "ring_model_bench: %s:%d: unknown kernel '%s'\n", path.c_str(), n,
                   kernel.c_str());
      return false;
    }
  }
  if (!fwd.empty()) in.attn_fwd = fwd;
  if (!bwd.empty()) in.attn_bwd = bwd;
  if (!gemm.empty()) in.gemm = gemm;
  in.measured = true;
  return true;
}

double ms(double s) { return s * 1e3; }

void ring(const Model& m, const Inputs& in, double T) {
  const double B = in.link_gbps * 1e9 * in.link_eff;
  const double lat = in.latency_us * 1e-6;
  std::printf("\n== ring attention (cp), zigzag, T = %.0fK tokens, batch 1, tp 1, per layer ==\n",
              T / 1024);
  std::printf("%4s %7s | %9s %9s %6s | %9s %9s %6s | %10s %10s\n", "cp", "chunk c", "fwd comp",
              "fwd xfer", "hides", "bwd comp", "bwd xfer", "hides", "exposed/L", "attn/L");
  std::printf("%4s %7s | %9s %9s %6s | %9s %9s %6s | %10s %10s\n", "", "tokens", "ms/step",
              "ms/step", "", "ms/step", "ms/step", "", "ms fwd+bwd", "ms fwd+bwd");
  for (int cp : {2, 4, 8}) {
    const double c = T / (2.0 * cp);
    const double ffwd = 8 * c * c * m.head_dim * m.heads;
    const double fbwd = 2.5 * ffwd;
    const double tf = ffwd / pick(in.attn_fwd, c);
    const double tb = fbwd / pick(in.attn_bwd, c);
    const double kv = 2 * 2 * c * m.kv_heads * m.head_dim * m.bytes;
    const double dkv = 2 * 2 * c * m.kv_heads * m.head_dim * in.dkv_bytes;
    const double xf = kv / B + lat;
    const double xb = (kv + dkv) / B + lat;
    // Exposed per layer: forward cp-1 transfers each behind one compute step;
    // backward cp-1 steps with K/V + dK/dV, and the last hop home of dK/dV
    // (nothing left to compute behind it).
    const double exposed = (cp - 1) * std::max(0.0, xf - tf) + (cp - 1) * std::max(0.0, xb - tb) +
                           (dkv / B + lat);
    const double attn = cp * (tf + tb);
    std::printf("%4d %7.0f | %9.3f %9.3f %6s | %9.3f %9.3f %6s | %10.3f %10.3f\n", cp, c, ms(tf),
                ms(xf), xf <= tf ? "yes" : "NO", ms(tb), ms(xb), xb <= tb ? "yes" : "NO",
                ms(exposed), ms(attn));
  }
}

struct Gemm {
  const char* name;
  double in, out;  // weight [in, out] (full, before the tp split)
  const char* comm;  // the collective before (AG) or after (RS) it
};

void tp(const Model& m, const Inputs& in, double T) {
  const double B = in.link_gbps * 1e9 * in.link_eff;
  const double lat = in.latency_us * 1e-6;
  const double D = m.hidden, kvd = m.kv_heads * m.head_dim;
  const Gemm gemms[] = {{"qkv", D, D + 2 * kvd, "all-gather before"},
                        {"o", D, D, "reduce-scatter after"},
                        {"gate+up", D, 2 * m.ffn, "all-gather before"},
                        {"down", m.ffn, D, "reduce-scatter after"}};
  std::printf("\n== tensor parallel + sequence parallel, T = %.0fK tokens, batch 1, cp 1, per layer ==\n",
              T / 1024);
  std::printf("%4s %-8s %-21s | %9s %9s %7s %6s\n", "tp", "GEMM", "collective", "GEMM fwd",
              "comm", "comm/", "hides");
  std::printf("%4s %-8s %-21s | %9s %9s %7s %6s\n", "", "", "", "ms", "ms", "GEMM", "if ovl");
  for (int t : {2, 4, 8}) {
    const double act = T * D * m.bytes;  // the [T, D] activation of the group
    const double comm = (t - 1.0) / t * act / B + lat;
    const double rate = pick(in.gemm, T / t);
    double gemm_total = 0, comm_total = 0;
    for (const Gemm& g : gemms) {
      const double tg = 2 * T * g.in * g.out / t / rate;
      gemm_total += tg;
      comm_total += comm;
      std::printf("%4d %-8s %-21s | %9.3f %9.3f %7.2f %6s\n", t, g.name, g.comm, ms(tg), ms(comm),
                  comm / tg, comm <= tg ? "yes" : "NO");
    }
    const double heads = m.heads / t;
    // Causal attention of the layer on this rank (its heads, all T tokens).
    const double attn_f = 2 * T * T * m.head_dim * heads / pick(in.attn_fwd, T);
    const double attn_b = 2.5 * 2 * T * T * m.head_dim * heads / pick(in.attn_bwd, T);
    const double compute = 3 * gemm_total + attn_f + attn_b;  // bwd GEMMs 2x fwd
    const double comm_fb = 2 * comm_total;
    std::printf("%4d layer fwd+bwd: GEMM %.3f ms, attention %.3f ms, SP collectives %.3f ms "
                "(%.1f %% of compute if not overlapped; %.2f GB moved per rank)\n",
                t, ms(3 * gemm_total), ms(attn_f + attn_b), ms(comm_fb), 100 * comm_fb / compute,
                8 * (t - 1.0) / t * act / 1e9);
  }
}

// Ulysses x ring (parallel.ulysses; USP): P GPUs on the context axis (tp 1),
// U-way all-to-all groups of neighbouring ranks (inside a node when U <= 8)
// times R = P / U rings. Per layer, batch 1, T tokens, bf16:
//   compute   3.5 * 2 T^2 hd H / P / F_attn           (causal; balanced zigzag)
//   all-to-all per rank (parallel/ulysses_attention.h; blocking in rotor, so
//             exposed): (U-1)/U (6 Q + 6 K + 2 S) with Q = (T/P) H hd 2,
//             K = U (T/P) c hd 2 (c = Hkv / U kv heads, or 1 replicated),
//             S = (T/P) H 4; over NVLink when U <= 8, else InfiniBand
//   ring on the group layout: R - 1 forward hops of 2 K, R - 1 backward hops
//             of 2 K + 2 K dkv/2, each hidden behind 1/R of the compute when
//             it is shorter; over NVLink when the whole ring is inside one node
//             (P <= 8), else InfiniBand (every hop runs at once: the slowest
//             link sets the pace)
struct Cluster {
  double nvlink_gbps, ib_gbps, eff;
};

void hybrid(const Model& m, const Inputs& in, const Cluster& net, int P, double T) {
  const double F = pick(in.attn_fwd, 4096), Fb = pick(in.attn_bwd, 4096);
  const double nv = net.nvlink_gbps * 1e9 * net.eff, ib = net.ib_gbps * 1e9 * net.eff;
  const double lat = in.latency_us * 1e-6;
  const double tl = T / P;
  const double fwd = 2 * T * T * m.head_dim * m.heads / P / F, bwd = 2.5 * 2 * T * T * m.head_dim * m.heads / P / Fb;
  std::printf("%-10s %4d %6.0fK |", m.name, P, T / 1024);
  double best = 1e30;
  int best_u = 1;
  std::string cells;
  for (int u = 1; u <= P; u *= 2) {
    char cell[32];
    const bool ok = static_cast<int>(m.heads) % u == 0 &&
                    (static_cast<int>(m.kv_heads) % u == 0 || u % static_cast<int>(m.kv_heads) == 0);
    if (!ok || u > 64) continue;
    const double c = static_cast<int>(m.kv_heads) % u == 0 ? m.kv_heads / u : 1;
    const double Q = tl * m.heads * m.head_dim * m.bytes, K = u * tl * c * m.head_dim * m.bytes;
    const double S = tl * m.heads * 4;
    const double a2a = u > 1 ? (u - 1.0) / u * (6 * Q + 6 * K + 2 * S) / (u <= 8 ? nv : ib) + 12 * lat : 0;
    const int r = P / u;
    const double link = P <= 8 ? nv : ib;
    const double hop_f = 2 * K / link + lat, hop_b = (2 * K + 2 * K * in.dkv_bytes / m.bytes) / link + lat;
    const double ring_exposed = r > 1 ? (r - 1) * (std::max(0.0, hop_f - fwd / r) + std::max(0.0, hop_b - bwd / r)) +
                                            (2 * K * in.dkv_bytes / m.bytes) / link
                                      : 0;
    const double total = fwd + bwd + a2a + ring_exposed;
    if (total < best) best = total, best_u = u;
    std::snprintf(cell, sizeof cell, " U%-2d %8.1f", u, ms(total));
    cells += cell;
  }
  std::printf("%s | best U = %d\n", cells.c_str(), best_u);
}

}  // namespace

int main(int argc, char** argv) {
  Inputs in;
  std::string csv;
  double ib_gbps = 50;  // 400 Gb/s NDR per GPU
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> double {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "ring_model_bench: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      char* end = nullptr;
      const double v = std::strtod(argv[++i], &end);
      if (*end != '\0' || !(v > 0)) {
        std::fprintf(stderr, "ring_model_bench: %s %s: not a positive number\n", a.c_str(), argv[i]);
        std::exit(2);
      }
      return v;
    };
    if (a == "--attn-fwd-tflops") in.attn_fwd = {{value(), 0}};
    else if (a == "--attn-bwd-tflops") in.attn_bwd = {{value(), 0}};
    else if (a == "--gemm-tflops") in.gemm = {{value(), 0}};
    else if (a == "--link-gbps") in.link_gbps = value();
    else if (a == "--link-eff") in.link_eff = value();
    else if (a == "--latency-us") in.latency_us = value();
    else if (a == "--dkv-bytes") in.dkv_bytes = value();
    else if (a == "--ib-gbps") ib_gbps = value();
    else if (a == "--measured-csv" && i + 1 < argc) csv = argv[++i];
    else {
      std::fprintf(stderr,
                   "usage: ring_model_bench [--attn-fwd-tflops F] [--attn-bwd-tflops F] "
                   "[--gemm-tflops F] [--link-gbps G] [--link-eff E] [--latency-us L] "
                   "[--dkv-bytes B] [--ib-gbps G] [--measured-csv FILE]\n");
      return 2;
    }
  }
  if (!csv.empty() && !read_csv(csv, in)) return 1;
  const Model m;
  std::printf("ring_model_bench: %s (hidden %.0f, %.0f heads, %.0f kv heads, head_dim %.0f, "
              "ffn %.0f, bf16); a MODEL, not a measurement\n",
              m.name, m.hidden, m.heads, m.kv_heads, m.head_dim, m.ffn);
  auto show = [](const char* what, const std::vector<Rate>& r) {
    std::printf("  %-16s", what);
    for (const Rate& x : r) {
      if (x.tokens > 0) std::printf(" %.0f TFLOP/s @%.0f", x.tflops, x.tokens);
      else std::printf(" %.0f TFLOP/s", x.tflops);
    }
    std::printf("\n");
  };
  std::printf("kernel throughputs (%s):\n",
              in.measured ? "from --measured-csv / flags" : "ASSUMED, NOT MEASURED unless given by flags");
  show("attention fwd", in.attn_fwd);
  show("attention bwd", in.attn_bwd);
  show("GEMM", in.gemm);
  std::printf("link: %.0f GB/s per direction x %.2f efficiency = %.0f GB/s, %.0f us per transfer "
              "(assumed); dK/dV travel in %.0f-byte floats\n",
              in.link_gbps, in.link_eff, in.link_gbps * in.link_eff, in.latency_us, in.dkv_bytes);
  const double B = in.link_gbps * 1e9 * in.link_eff;
  std::printf("forward break-even chunk: c >= (Hkv/H) * F_attn_fwd / B = %.0f tokens per chunk "
              "(T >= %.0f per cp rank)\n",
              m.kv_heads / m.heads * pick(in.attn_fwd, 4096) / B,
              2 * m.kv_heads / m.heads * pick(in.attn_fwd, 4096) / B);
  // Backward: 2.5 * 8 c^2 hd H / F_bwd = 2 * 2c * Hkv * hd * (2 + dkv) / B.
  const double cb = 4 * m.kv_heads * (m.bytes + in.dkv_bytes) * pick(in.attn_bwd, 4096) / (20 * m.heads * B);
  std::printf("backward break-even chunk: c >= 4 Hkv (2 + dkv) F_attn_bwd / (20 H B) = %.0f tokens "
              "per chunk (T >= %.0f per cp rank)\n", cb, 2 * cb);
  for (double T : {32768.0, 131072.0}) {
    ring(m, in, T);
    tp(m, in, T);
  }
  // Ulysses x ring: which U is fastest, per model, GPU count and length.
  const Cluster net{in.link_gbps, ib_gbps, in.link_eff};
  std::printf("\n== Ulysses x ring (parallel.ulysses = U, cp = P GPUs, tp 1): ms per layer fwd+bwd "
              "(attention + exposed communication) ==\n");
  std::printf("links: NVLink %.0f GB/s inside a node of 8, InfiniBand %.0f GB/s per GPU across (x %.2f), "
              "ASSUMED\n", net.nvlink_gbps, net.ib_gbps, net.eff);
  Model l3;
  l3.name = "Llama-3-8B";
  l3.kv_heads = 8;
  l3.ffn = 14336;
  for (const Model* mm : {static_cast<const Model*>(&m), static_cast<const Model*>(&l3)})
    for (int P : {8, 64})
      for (double T : {32768.0, 131072.0, 524288.0, 1048576.0}) hybrid(*mm, in, net, P, T);
  return 0;
}
