"""Independent PyTorch check of rotor's tiny Llama.

Reads what torch_parity_dump wrote, rebuilds the same model in a few lines of
torch (float64, autograd), with its own RoPE frequencies computed from the
formulas of HF transformers' modeling_rope_utils, the entropy-aware logit
scalar, GQA, document masking, the fused loss and torch.optim.AdamW, then
compares logits, loss, every gradient and the weights after three AdamW steps.

Tolerances (per tensor, |rotor - torch| <= tol * max|torch| + tiny):
  f64 rotor: 1e-9 -- both sides compute in float64; only summation order differs.
  f32 rotor: 2e-4 for logits/loss/gradients -- float32 epsilon is 1.2e-7, and
    errors grow through ~20 dependent ops and sums of up to 40 terms; AdamW
    weights 2e-3 -- step 1 divides by |g|, which amplifies float32 gradient
    noise on the smallest gradients (a few elements move by a fraction of lr).
Exit 0 on match, 1 on mismatch, 77 when torch is missing (a skip in ctest).
"""
import json
import math
import os
import sys

try:
    import numpy as np
    import torch
except ImportError as e:  # pragma: no cover
    print(f"SKIP: {e}")
    sys.exit(77)

torch.set_default_dtype(torch.float64)


def load(d, man, name):
    shape = man["tensors"][name]
    return torch.from_numpy(np.fromfile(os.path.join(d, name + ".f64"), dtype="<f8").reshape(shape))


def inv_freq_for(rope, dim):
    """HF modeling_rope_utils formulas, written independently in float64."""
    theta, s, L = rope["theta"], rope["factor"], rope["original_max_position"]
    base = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    method = rope["method"]
    if method == "none":
        return base, 1.0
    if method == "linear":
        return base / s, 1.0
    if method == "yarn":
        def corr(nrot):
            return dim * math.log(L / (nrot * 2 * math.pi)) / (2 * math.log(theta))
        lo, hi = max(math.floor(corr(32.0)), 0), min(math.ceil(corr(1.0)), dim - 1)
        if lo == hi:
            hi += 0.001
        ramp = ((torch.arange(dim // 2, dtype=torch.float64) - lo) / (hi - lo)).clamp(0, 1)
        keep = 1 - ramp  # 1: extrapolate (unchanged), 0: interpolate (/s)
        return base / s * (1 - keep) + base * keep, 0.1 * math.log(s) + 1.0
    if method == "llama3":
        low, high = 1.0, 4.0
        wavelen = 2 * math.pi / base
        out = torch.where(wavelen > L / low, base / s, base)
        smooth = (L / wavelen - low) / (high - low)
        mid = (1 - smooth) * out / s + smooth * out
        medium = (wavelen >= L / high) & (wavelen <= L / low)
        return torch.where(medium, mid, out), 1.0
    raise SystemExit(f"unknown method {method}")


def rope(x, pos, inv_freq, af):  # x [B, T, H, D], rotate-half pairing
    ang = pos.to(torch.float64)[..., None] * inv_freq  # [B, T, D/2]
    emb = torch.cat([ang, ang], dim=-1)[:, :, None, :]
    half = x.shape[-1] // 2
    rot = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * emb.cos() * af + rot * emb.sin() * af


def rms(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def forward(P, cfg, rope_cfg, ls, ids, pos, seg):
    B, T = ids.shape
    hq, hkv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    inv, af = inv_freq_for(rope_cfg, hd)
    inv = inv.to(torch.float32).to(torch.float64)  # a float32 buffer, as in HF and rotor
    visible = (pos[:, None, :] <= pos[:, :, None]) & (seg[:, None, :] == seg[:, :, None])  # [B, Tq, Tk]
    x = P["model.embed_tokens.weight"][ids]
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        h = rms(x, P[p + "input_layernorm.weight"], cfg["rms_norm_eps"])
        q = (h @ P[p + "self_attn.q_proj.weight"].T).view(B, T, hq, hd)
        k = (h @ P[p + "self_attn.k_proj.weight"].T).view(B, T, hkv, hd)
        v = (h @ P[p + "self_attn.v_proj.weight"].T).view(B, T, hkv, hd)
        q, k = rope(q, pos, inv, af), rope(k, pos, inv, af)
        if l not in ls["skip_layers"]:
            t = (torch.log(pos.to(torch.float64) + 1) / math.log(ls["base_length"])).clamp(min=1.0)
            q = q * t[:, :, None, None]
        k = k.repeat_interleave(hq // hkv, dim=2)
        v = v.repeat_interleave(hq // hkv, dim=2)
        s = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(hd)
        s = s.masked_fill(~visible[:, None], float("-inf"))
        a = torch.einsum("bhqk,bkhd->bqhd", s.softmax(-1), v).reshape(B, T, hq * hd)
        x = x + a @ P[p + "self_attn.o_proj.weight"].T
        h = rms(x, P[p + "post_attention_layernorm.weight"], cfg["rms_norm_eps"])
        g = h @ P[p + "mlp.gate_proj.weight"].T
        u = h @ P[p + "mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(g) * u) @ P[p + "mlp.down_proj.weight"].T
    x = rms(x, P["model.norm.weight"], cfg["rms_norm_eps"])
    head = P["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else P["lm_head.weight"]
    return (x @ head.T).reshape(B * T, -1)


def main():
    d = sys.argv[1]
    man = json.load(open(os.path.join(d, "manifest.json")))
    cfg, rope_cfg, ls = man["config"], man["rope"], man["logit_scale"]
    names = [n[len("init."):] for n in man["tensors"] if n.startswith("init.")]
    P = {n: load(d, man, "init." + n).clone().requires_grad_(True) for n in names}
    ids = load(d, man, "input_ids").long()
    targets = load(d, man, "targets").long().reshape(-1)
    pos = load(d, man, "positions").long()
    seg = load(d, man, "segments").long()

    f32 = man["dtype"] == "f32"
    tol, tol_adam = (2e-4, 2e-3) if f32 else (1e-9, 1e-9)
    failures = []

    def compare(what, got, want, tol):
        ref = want.detach().abs().max().item()
        if not math.isfinite(ref) or ref == 0:
            failures.append(f"{what}: reference max|x| = {ref} (vacuous)")
            return
        err = (got - want.detach()).abs().max().item()
        status = "ok" if err <= tol * ref + 1e-12 else "MISMATCH"
        if status != "ok":
            failures.append(f"{what}: max err {err:.3e} > {tol:.0e} * {ref:.3e}")
        return err / ref

    def loss_fn():
        logits = forward(P, cfg, rope_cfg, ls, ids, pos, seg)
        return logits, torch.nn.functional.cross_entropy(logits, targets, ignore_index=-100)

    logits, loss = loss_fn()
    worst = compare("logits", load(d, man, "logits"), logits, tol)
    compare("loss", torch.tensor(man["loss"]), loss, tol)
    loss.backward()
    for n in names:
        r = compare("grad " + n, load(d, man, "grad." + n), P[n].grad, tol)
        worst = max(worst or 0, r or 0)

    hp = man["adamw"]
    decay = [P[n] for n in names if P[n].dim() > 1]
    no_decay = [P[n] for n in names if P[n].dim() == 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": hp["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"])
    for s in range(hp["steps"]):
        if s > 0:
            opt.zero_grad()
            loss_fn()[1].backward()
        opt.step()
    for n in names:
        compare("adamw " + n, load(d, man, "adamw." + n), P[n], tol_adam)

    print(f"torch parity ({man['dtype']}, rope {rope_cfg['method']}): {len(names)} parameters, "
          f"loss {loss.item():.6f}, worst relative error of logits/grads {worst:.2e}")
    if failures:
        print("\n".join(failures))
        sys.exit(1)


if __name__ == "__main__":
    main()
