#!/usr/bin/env python3
"""Peer timings for tests/bench/gemm_bench: torch.matmul on the GEMMs of a
Llama layer, bf16, on the shapes and memory layouts gemm_bench uses
(N tokens; 1b: hidden 2048, q 2048, kv 1024, ffn 5632; 8b: hidden 4096,
q 4096, kv 1024, ffn 14336), timed with torch.cuda.Event.

    python3 tests/bench/matmul_peer.py --out peer.csv [--models 1b,8b] [--tokens 4096]
    bin/gemm_bench --peer-csv peer.csv

For each linear layer W [out, in] (row-major, as nn.Linear stores it):
  fwd    x @ W.t()        [N, in] x [in, out]     (W read transposed, no copy)
  dgrad  dy @ W           [N, out] x [out, in]
  wgrad  dy.t() @ x       [out, N] x [N, in]      (dy read transposed, no copy)
wgrad also as torch.addmm(dW, dy.t(), x, out_dtype=torch.float32) with an f32
dW (a new f32 result each call, the same reads and writes as accumulating in place; rotor's weight-gradient contract: bf16 inputs, f32 accumulation into f32),
when this torch has the out_dtype argument (2.8+ on CUDA), else as
torch.mm(..., out_dtype=torch.float32); a variant this torch lacks gets an
empty time.

CSV columns: model,layer,pass,m,n,k,variant,ms (variant: matmul = bf16 out,
addmm_f32 / mm_f32 = f32 out). Exits 77 without torch, 0 with
"skipped: no usable CUDA device" without a GPU.
"""
import argparse
import sys

torch = None  # imported after the arguments parse (--help needs no torch)


def import_torch():
    global torch
    try:
        import torch
    except ImportError as e:
        print(f"skipped: {e} (this peer needs torch)")
        sys.exit(77)

MODELS = {"1b": (2048, 2048, 1024, 5632), "8b": (4096, 4096, 1024, 14336)}


def linears(hidden, q_out, kv_out, ffn):
    return [("q", hidden, q_out), ("k", hidden, kv_out), ("v", hidden, kv_out), ("o", q_out, hidden),
            ("gate", hidden, ffn), ("up", hidden, ffn), ("down", ffn, hidden)]


def time_ms(f, max_iters, max_seconds):
    """One untimed call, one timed call to size the run, then n calls (as gemm_bench)."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    def run(n):
        start.record()
        for _ in range(n):
            f()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end)

    f()
    one = run(1)
    n = max(1, min(max_iters, int(max_seconds * 1e3 / max(one, 1e-3))))
    return run(n) / n


def f32_wgrad(dy, x, dw):
    """The f32-output weight gradient, or (None, None) when this torch has no out_dtype."""
    try:
        torch.addmm(dw, dy.t(), x, out_dtype=torch.float32)
        return "addmm_f32", lambda: torch.addmm(dw, dy.t(), x, out_dtype=torch.float32)
    except (TypeError, RuntimeError):
        pass
    try:
        torch.mm(dy.t(), x, out_dtype=torch.float32)
        return "mm_f32", lambda: torch.mm(dy.t(), x, out_dtype=torch.float32)
    except (TypeError, RuntimeError) as e:
        print(f"no f32-output matmul in torch {torch.__version__}: {e}", file=sys.stderr)
        return None, None


def bench_linear(model, name, fin, fout, n, a, rows):
    dev = torch.device("cuda")
    g = torch.Generator(device=dev).manual_seed(0)

    def rnd(*shape, s=1.0):
        return ((torch.rand(*shape, device=dev, generator=g) * 2 - 1) * s).to(torch.bfloat16)

    x, w, dy = rnd(n, fin), rnd(fout, fin, s=0.05), rnd(n, fout, s=1e-3)
    dw = torch.zeros(fout, fin, device=dev, dtype=torch.float32)
    cases = [("fwd", n, fout, fin, "matmul", lambda: torch.matmul(x, w.t())),
             ("dgrad", n, fin, fout, "matmul", lambda: torch.matmul(dy, w)),
             ("wgrad", fout, fin, n, "matmul", lambda: torch.matmul(dy.t(), x))]
    variant, f = f32_wgrad(dy, x, dw)
    cases.append(("wgrad", fout, fin, n, variant or "addmm_f32", f))
    for pss, m, nn, k, var, fn in cases:
        ms = f"{time_ms(fn, a.iters, a.max_seconds):.6f}" if fn else ""
        rows.append(f"{model},{name},{pss},{m},{nn},{k},{var},{ms}")
        if ms:
            print(f"{model} {name:5s} {pss:6s} {var:10s} {float(ms):.4f} ms "
                  f"{2.0 * m * nn * k / float(ms) / 1e9:.1f} TF/s", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="CSV to write")
    ap.add_argument("--models", default="1b,8b")
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--max-seconds", type=float, default=0.15, help="per GEMM")
    a = ap.parse_args()
    import_torch()
    if not torch.cuda.is_available():
        print("skipped: no usable CUDA device")
        return 0
    print(f"device: {torch.cuda.get_device_name()} torch {torch.__version__}", file=sys.stderr)
    rows = ["model,layer,pass,m,n,k,variant,ms"]
    for model in a.models.split(","):
        for name, fin, fout in linears(*MODELS[model]):
            bench_linear(model, name, fin, fout, a.tokens, a, rows)
            with open(a.out, "w") as f:  # after every layer: a run cut short keeps what it measured
                f.write("\n".join(rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
