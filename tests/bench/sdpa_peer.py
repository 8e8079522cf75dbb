#!/usr/bin/env python3
"""Peer timings for tests/bench/attention_bench: PyTorch
scaled_dot_product_attention, causal, bf16, on the shapes attention_bench uses
(head dim 128, 32 query heads, 8 kv heads, batch max(1, 16384 // S)), with the
flash and the cuDNN backends, forward and backward timed with torch.cuda.Event.

    python3 tests/bench/sdpa_peer.py --out peer.csv [--seqs 4096,16384,65536] [--iters N]
                                     [--max-seconds S]
    bin/attention_bench --peer-csv peer.csv

--max-seconds caps each timed loop as attention_bench's does: iterations =
S / (one call's time), at most --iters. Exits 77 without torch.

CSV columns: seq,batch,hq,hkv,d,backend,fwd_ms,bwd_ms (a backend that cannot
run a shape gets empty times and its error on stderr).

Layout: SDPA's own [B, H, S, D] (contiguous), its fastest. GQA: k and v are
expanded to the 32 query heads *outside* the timed region (leaf tensors), so
the peer does the same matmul FLOPs as rotor's GQA kernels but reads 4x the
K/V bytes and does not reduce dk/dv over the group (both small next to the
S^2 work); enable_gqa is not used because not every backend takes it.
Forward: timed with autograd recording (as in training: the backends then
also write their LSE). Backward: out.backward(dout) after an untimed forward,
so only the backward kernels (preprocess, dq/dk/dv) are in the events.
"""
import argparse
import math
import sys

torch = F = SDPBackend = sdpa_kernel = None  # imported after the arguments parse (--help needs no torch)


def import_torch():
    global torch, F, SDPBackend, sdpa_kernel
    try:
        import torch
        import torch.nn.functional as F
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError as e:
        print(f"skipped: {e} (this peer needs torch)")
        sys.exit(77)

HQ, HKV, D = 32, 8, 128


def capped(iters, one_ms, max_seconds):
    """Iterations under the time cap (all of them without one)."""
    if max_seconds <= 0:
        return iters
    return max(1, min(iters, int(max_seconds * 1e3 / max(one_ms, 1e-3))))


def time_backend(backend, S, iters, max_seconds):
    B = max(1, 16384 // S)
    dev = torch.device("cuda")
    g = torch.Generator(device=dev).manual_seed(0)

    def rnd(*shape):
        return (torch.rand(*shape, device=dev, generator=g, dtype=torch.float32) * 2 - 1).to(torch.bfloat16)

    q = rnd(B, HQ, S, D).requires_grad_()
    k = rnd(B, HKV, S, D).repeat_interleave(HQ // HKV, dim=1).contiguous().requires_grad_()
    v = rnd(B, HKV, S, D).repeat_interleave(HQ // HKV, dim=1).contiguous().requires_grad_()
    dout = rnd(B, HQ, S, D)
    scale = 1.0 / math.sqrt(D)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    with sdpa_kernel([backend]):
        def fwd():
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)

        out = fwd()  # warm-up (and fails here if the backend cannot run the shape)
        out.backward(dout)
        torch.cuda.synchronize()
        start.record()
        out = fwd()
        end.record()
        torch.cuda.synchronize()
        n = capped(iters, start.elapsed_time(end), max_seconds)
        start.record()
        for _ in range(n):
            out = fwd()
        end.record()
        torch.cuda.synchronize()
        fwd_ms = start.elapsed_time(end) / n

        total, n = 0.0, iters
        for i in range(iters):
            if i == n:
                break
            q.grad = k.grad = v.grad = None
            out = fwd()
            torch.cuda.synchronize()
            start.record()
            out.backward(dout)
            end.record()
            torch.cuda.synchronize()
            total += start.elapsed_time(end)
            if i == 0:
                n = capped(iters, total, max_seconds)
        bwd_ms = total / n
    return B, fwd_ms, bwd_ms


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="CSV to write")
    ap.add_argument("--seqs", default="4096,16384,65536")
    ap.add_argument("--iters", type=int, default=0, help="default: 20 / 10 / 3 by length")
    ap.add_argument("--max-seconds", type=float, default=0, help="cap per timed loop (0: none)")
    a = ap.parse_args()
    import_torch()
    if not torch.cuda.is_available():
        print("skipped: no usable CUDA device")
        return 0
    print(f"device: {torch.cuda.get_device_name()} torch {torch.__version__}", file=sys.stderr)
    backends = [("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION)]
    rows = ["seq,batch,hq,hkv,d,backend,fwd_ms,bwd_ms"]
    for S in (int(x) for x in a.seqs.split(",")):
        iters = a.iters or (20 if S <= 4096 else 10 if S <= 16384 else 3)
        for name, backend in backends:
            B = max(1, 16384 // S)
            try:
                B, fwd_ms, bwd_ms = time_backend(backend, S, iters, a.max_seconds)
                fwd_s, bwd_s = f"{fwd_ms:.4f}", f"{bwd_ms:.4f}"
                flop = 4.0 * B * HQ * S * S * D / 2
                print(f"S={S} B={B} {name}: fwd {fwd_ms:.3f} ms ({flop / fwd_ms / 1e9:.1f} TF/s), "
                      f"bwd {bwd_ms:.3f} ms ({2.5 * flop / bwd_ms / 1e9:.1f} TF/s)", file=sys.stderr)
            except Exception as e:  # the backend does not take this shape / GPU
                print(f"S={S} {name}: failed: {e}", file=sys.stderr)
                fwd_s = bwd_s = ""
            rows.append(f"{S},{B},{HQ},{HKV},{D},{name},{fwd_s},{bwd_s}")
            torch.cuda.empty_cache()
            with open(a.out, "w") as f:  # after every shape: a run cut short keeps what it measured
                f.write("\n".join(rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
