#!/usr/bin/env python3
"""Peer timings for tests/bench/attention_bench: PyTorch
scaled_dot_product_attention, causal, bf16, on the shapes attention_bench uses
(head dim 128, 32 query heads, 8 kv heads, batch max(1, 16384 // S)), with the
flash and the cuDNN backends, forward and backward timed with torch.cuda.Event.

    python3 tests/bench/sdpa_peer.py --out peer.csv [--seqs 4096,16384,65536] [--iters N]
    bin/attention_bench --peer-csv peer.csv

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

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

HQ, HKV, D = 32, 8, 128


def time_backend(backend, S, iters):
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
        for _ in range(iters):
            out = fwd()
        end.record()
        torch.cuda.synchronize()
        fwd_ms = start.elapsed_time(end) / iters

        total = 0.0
        for _ in range(iters):
            q.grad = k.grad = v.grad = None
            out = fwd()
            torch.cuda.synchronize()
            start.record()
            out.backward(dout)
            end.record()
            torch.cuda.synchronize()
            total += start.elapsed_time(end)
        bwd_ms = total / iters
    return B, fwd_ms, bwd_ms


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="CSV to write")
    ap.add_argument("--seqs", default="4096,16384,65536")
    ap.add_argument("--iters", type=int, default=0, help="default: 20 / 10 / 3 by length")
    a = ap.parse_args()
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
                B, fwd_ms, bwd_ms = time_backend(backend, S, iters)
                fwd_s, bwd_s = f"{fwd_ms:.4f}", f"{bwd_ms:.4f}"
                flop = 4.0 * B * HQ * S * S * D / 2
                print(f"S={S} B={B} {name}: fwd {fwd_ms:.3f} ms ({flop / fwd_ms / 1e9:.1f} TF/s), "
                      f"bwd {bwd_ms:.3f} ms ({2.5 * flop / bwd_ms / 1e9:.1f} TF/s)", file=sys.stderr)
            except Exception as e:  # the backend does not take this shape / GPU
                print(f"S={S} {name}: failed: {e}", file=sys.stderr)
                fwd_s = bwd_s = ""
            rows.append(f"{S},{B},{HQ},{HKV},{D},{name},{fwd_s},{bwd_s}")
            torch.cuda.empty_cache()
    with open(a.out, "w") as f:
        f.write("\n".join(rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
