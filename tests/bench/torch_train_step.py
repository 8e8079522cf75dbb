"""PyTorch peer for tests/bench/train_step_bench: the same Llama shape and
training step (forward, backward, AdamW) on the CPU, float32, eager attention
(softmax of masked logits, as HF's eager path), timed the same way.

usage: torch_train_step.py LAYERS HIDDEN HEADS KV_HEADS FFN VOCAB BATCH SEQ STEPS THREADS
Prints one JSON line: {"tokens_per_s": ..., "step_s": ..., "peak_rss": BYTES} (the
process's peak resident set, for tests/bench/long_context_bench).
"""
import json
import math
import resource
import sys
import time

try:
    import torch
except ImportError as e:
    print(json.dumps({"error": str(e)}))
    sys.exit(77)

L, D, H, KV, F, V, B, T, STEPS, THREADS = map(int, sys.argv[1:11])
torch.set_num_threads(THREADS)
torch.manual_seed(0)
hd = D // H


def lin(o, i):
    return torch.nn.Parameter(torch.randn(o, i) * 0.02)


params = {"emb": lin(V, D), "norm": torch.nn.Parameter(torch.ones(D)), "head": lin(V, D)}
for l in range(L):
    params.update({f"{l}.n1": torch.nn.Parameter(torch.ones(D)), f"{l}.n2": torch.nn.Parameter(torch.ones(D)),
                   f"{l}.q": lin(H * hd, D), f"{l}.k": lin(KV * hd, D), f"{l}.v": lin(KV * hd, D),
                   f"{l}.o": lin(D, H * hd), f"{l}.g": lin(F, D), f"{l}.u": lin(F, D), f"{l}.d": lin(D, F)})
P = params
inv = 1.0 / (10000 ** (torch.arange(0, hd, 2).float() / hd))
ang = torch.arange(T).float()[:, None] * inv
cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()
mask = torch.full((T, T), float("-inf")).triu(1)


def rms(x, w):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * w


def rope(x):  # [B, H, T, hd]
    rot = torch.cat([-x[..., hd // 2:], x[..., : hd // 2]], -1)
    return x * cos + rot * sin


def step(ids, tgt):
    x = P["emb"][ids]
    for l in range(L):
        h = rms(x, P[f"{l}.n1"])
        q = (h @ P[f"{l}.q"].T).view(B, T, H, hd).transpose(1, 2)
        k = (h @ P[f"{l}.k"].T).view(B, T, KV, hd).transpose(1, 2)
        v = (h @ P[f"{l}.v"].T).view(B, T, KV, hd).transpose(1, 2)
        q, k = rope(q), rope(k)
        k, v = k.repeat_interleave(H // KV, 1), v.repeat_interleave(H // KV, 1)
        a = ((q @ k.transpose(-1, -2)) / math.sqrt(hd) + mask).softmax(-1) @ v
        x = x + a.transpose(1, 2).reshape(B, T, D) @ P[f"{l}.o"].T
        h = rms(x, P[f"{l}.n2"])
        x = x + (torch.nn.functional.silu(h @ P[f"{l}.g"].T) * (h @ P[f"{l}.u"].T)) @ P[f"{l}.d"].T
    logits = rms(x, P["norm"]) @ P["head"].T
    return torch.nn.functional.cross_entropy(logits.view(-1, V), tgt.view(-1))


opt = torch.optim.AdamW(P.values(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
ids = torch.randint(0, V, (B, T))
tgt = torch.randint(0, V, (B, T))


def one():
    opt.zero_grad(set_to_none=False)
    loss = step(ids, tgt)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(P.values(), 1.0)
    opt.step()


one()  # warm-up
t0 = time.perf_counter()
for _ in range(STEPS):
    one()
dt = (time.perf_counter() - t0) / STEPS
peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"tokens_per_s": B * T / dt, "step_s": dt, "peak_rss": peak_rss}))
