#!/usr/bin/env python3
"""Peer of tests/bench/gpu_train_step_bench: one training step of the same
Llama shape with transformers' LlamaForCausalLM (attn_implementation="sdpa")
and torch.optim.AdamW on the GPU, timed the same way (one warm-up step, then
up to --steps steps or --max-seconds, wall clock around each step with a
synchronize at its end).

    python3 tests/bench/hf_train_step_peer.py --out peer.json [--modes amp,bf16]
        [--layers 16 --hidden 2048 --heads 16 --kv-heads 8 --ffn 5632 --vocab 32000
         --batch 1 --seq 4096] [--steps N] [--max-seconds S]
    bin/gpu_train_step_bench --peer-json peer.json

Modes (each on a fresh model; peak memory reset before it is built):
  amp   f32 parameters, gradients and AdamW moments, forward and backward
        under torch.autocast(bfloat16): the same precision contract as
        rotor's bf16 mixed precision (f32 masters, bf16 compute)
  bf16  the model cast to bfloat16 (parameters, gradients and moments in
        bf16): the cheaper "train in bf16" setup, for reference
Step: zero_grad(set_to_none), loss = model(input_ids, labels).loss (HF shifts
the labels: T-1 counted tokens per row, against rotor's T), backward,
clip_grad_norm_(1.0), AdamW (lr 1e-4, betas 0.9/0.95, eps 1e-8, weight decay
0.1 on matrices, none on the 1-D norm weights as rotor; fused=True, the
fastest torch AdamW on CUDA). Eager mode (no torch.compile). Random token ids
and labels, fresh each step.
Writes {"device", "torch", "transformers", "modes": {mode: {"tokens_per_s",
"step_s", "first_step_s", "timed_steps", "peak_bytes", "loss"} or {"error"}}}.
Exits 77 without torch or transformers, 0 with "skipped: no usable CUDA
device" without a GPU.
"""
import argparse
import gc
import json
import sys
import time

torch = None  # imported after the arguments parse (--help needs no torch)


def import_torch():
    global torch
    try:
        import torch
    except ImportError as e:
        print(f"skipped: {e} (this peer needs torch and transformers)")
        sys.exit(77)


def build(a, mode):
    from transformers import LlamaConfig, LlamaForCausalLM

    # rope theta 10000 and rms_norm_eps 1e-6 are LlamaConfig's defaults, as rotor's.
    config = LlamaConfig(vocab_size=a.vocab, hidden_size=a.hidden, intermediate_size=a.ffn,
                         num_hidden_layers=a.layers, num_attention_heads=a.heads, num_key_value_heads=a.kv_heads,
                         max_position_embeddings=a.seq, tie_word_embeddings=False, use_cache=False,
                         attn_implementation="sdpa")
    with torch.device("cuda"):  # initialised on the GPU (a CPU init of 1B parameters takes a minute)
        model = LlamaForCausalLM(config)
    if mode == "bf16":
        model = model.to(torch.bfloat16)
    model.train()
    impl = getattr(model.config, "_attn_implementation", "?")
    if impl != "sdpa":
        raise RuntimeError(f"attention implementation is {impl}, not sdpa")
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}]
    try:
        opt = torch.optim.AdamW(groups, lr=1e-4, betas=(0.9, 0.95), eps=1e-8, fused=True)
    except (TypeError, RuntimeError):
        opt = torch.optim.AdamW(groups, lr=1e-4, betas=(0.9, 0.95), eps=1e-8)
    return model, opt


def run_mode(a, mode):
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    model, opt = build(a, mode)
    gen = torch.Generator(device="cuda").manual_seed(0)

    def step():
        t0 = time.perf_counter()
        ids = torch.randint(0, a.vocab, (a.batch, a.seq), device="cuda", generator=gen)
        labels = torch.randint(0, a.vocab, (a.batch, a.seq), device="cuda", generator=gen)
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=(mode == "amp")):
            loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        value = loss.item()  # synchronises, as rotor's step reads its loss back
        torch.cuda.synchronize()
        if value != value or abs(value) == float("inf"):
            raise RuntimeError(f"non-finite loss {value}")
        return time.perf_counter() - t0, value

    first, _ = step()
    total, n, loss = 0.0, 0, None
    while n < max(1, a.steps) and (n == 0 or total < a.max_seconds):
        dt, loss = step()
        total += dt
        n += 1
    result = {"tokens_per_s": a.batch * a.seq * n / total, "step_s": total / n, "first_step_s": first,
              "timed_steps": n, "peak_bytes": torch.cuda.max_memory_allocated(), "loss": loss}
    del model, opt
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="JSON to write")
    ap.add_argument("--modes", default="amp,bf16")
    for name, default in [("layers", 16), ("hidden", 2048), ("heads", 16), ("kv-heads", 8), ("ffn", 5632),
                          ("vocab", 32000), ("batch", 1), ("seq", 4096), ("steps", 5)]:
        ap.add_argument(f"--{name}", type=int, default=default)
    ap.add_argument("--max-seconds", type=float, default=10.0, help="per mode, timed steps")
    a = ap.parse_args()
    import_torch()
    if not torch.cuda.is_available():
        print("skipped: no usable CUDA device")
        return 0
    try:
        import transformers
    except ImportError as e:
        print(f"skipped: {e} (this peer needs transformers)")
        return 77
    out = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
           "transformers": transformers.__version__, "modes": {}}
    for mode in a.modes.split(","):
        try:
            r = run_mode(a, mode)
            print(f"hf {mode}: {r['tokens_per_s']:.0f} tokens/s, {r['step_s']:.3f} s/step over "
                  f"{r['timed_steps']} steps (first {r['first_step_s']:.2f} s), peak "
                  f"{r['peak_bytes'] / 2**30:.2f} GiB, loss {r['loss']:.4f}", file=sys.stderr)
        except Exception as e:  # recorded: an OOM or a transformers API change
            r = {"error": f"{type(e).__name__}: {e}"}
            print(f"hf {mode}: failed: {r['error']}", file=sys.stderr)
        out["modes"][mode] = r
        with open(a.out, "w") as f:  # after every mode: a run cut short keeps what it measured
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
