"""`rotor export-hf` checked by an independent PyTorch Llama.

    hf_parity.py ROTOR_BINARY METHOD

For each of (untied, tied) embeddings, with GQA (4 query heads, 2 kv heads):
trains a tiny model 2 steps on a byte corpus (rotor prep + rotor train,
data.sequence_length 32) with rope.method METHOD, exports it with
`rotor export-hf --dtype f32`, and compares the logits of `rotor score
--logits` with those of a float64 PyTorch Llama that reads ONLY the exported
config.json and model.safetensors (parsed here with struct + json + numpy),
with RoPE inverse frequencies written from the formulas of HF transformers'
modeling_rope_utils (default, linear, dynamic, yarn, llama3, longrope), at
lengths 20, 32 and 80 (below, at and beyond the training length).

Tolerance: max |rotor - torch| <= 1e-4 * max |torch logit| + 1e-6 (rotor
computes in float32, eps 1.2e-7, through ~20 dependent ops; torch in float64).
Exit 0 on match, 1 on mismatch or a failing command, 77 when torch or numpy is
missing (a skip in ctest).
"""
import importlib.util
import json
import math
import os
import struct
import subprocess
import sys
import tempfile
import types

try:
    import numpy as np
    import torch
except ImportError as e:  # pragma: no cover
    print(f"SKIP: {e}")
    sys.exit(77)

torch.set_default_dtype(torch.float64)

HIDDEN, HEADS, KV_HEADS, LAYERS, INTER, VOCAB = 32, 4, 2, 2, 48, 260
HEAD_DIM = HIDDEN // HEADS
TRAIN_LEN = 32
LENGTHS = [20, 32, 80]

# rope sections (rotor recipe) per method; model.max_position_embeddings 32.
ROPES = {
    "none": "{method: none, theta: 10000}",
    "linear": "{method: linear, theta: 10000, factor: 2}",
    "dynamic": "{method: dynamic, theta: 10000, factor: 2, original_max_position: 32}",
    "yarn": "{method: yarn, theta: 10000, factor: 2, original_max_position: 16}",
    "llama3": "{method: llama3, theta: 500000, factor: 8, original_max_position: 8, "
              "low_freq_factor: 1, high_freq_factor: 4}",
    "longrope": "{method: longrope, theta: 10000, factor: 2, original_max_position: 16, "
                "short_factor: [1.0, 1.1, 1.3, 1.6], long_factor: [1.2, 1.9, 2.7, 3.5]}",
    # entropy-aware ABF: a larger base and the logit scalar (no transformers key:
    # exported as rotor_logit_scale, applied by --with-modeling-code).
    "eabf": "{method: none, theta: 500000}",
}
LOGIT_SCALES = {"eabf": "{kind: log_position, base_length: 4, skip_layers: [0]}"}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        assert e["dtype"] == "F32", (name, e["dtype"])
        arr = np.frombuffer(data[8 + n + b:8 + n + end], dtype="<f4").reshape(e["shape"])
        out[name] = torch.from_numpy(arr.astype(np.float64))
    return out


def rope_params(cfg):
    """The rope dict the way transformers reads it (rope_scaling, else defaults)."""
    rs = dict(cfg.get("rope_scaling") or {})
    rs.setdefault("rope_type", rs.get("type", "default"))
    return rs


def inv_freq_hf(cfg, seq_len):
    """HF modeling_rope_utils, float64. Returns (inv_freq, attention_factor)."""
    dim = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    base = cfg["rope_theta"]
    mpe = cfg["max_position_embeddings"]
    rs = rope_params(cfg)
    kind = rs["rope_type"]

    def default(b):
        return 1.0 / b ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)

    if kind == "default":
        return default(base), 1.0
    factor = rs["factor"]
    if kind == "linear":
        return default(base) / factor, 1.0
    if kind == "dynamic":
        # _compute_dynamic_ntk_parameters with seq_len = max(current length, mpe).
        n = max(seq_len, mpe)
        b = base * ((factor * n / mpe) - (factor - 1)) ** (dim / (dim - 2))
        return default(b), 1.0
    if kind == "yarn":
        omax = rs.get("original_max_position_embeddings") or mpe
        af = rs.get("attention_factor")
        if af is None:
            af = 0.1 * math.log(factor) + 1.0 if factor > 1 else 1.0
        beta_fast, beta_slow = rs.get("beta_fast") or 32, rs.get("beta_slow") or 1

        def corr_dim(nrot):
            return (dim * math.log(omax / (nrot * 2 * math.pi))) / (2 * math.log(base))

        low, high = corr_dim(beta_fast), corr_dim(beta_slow)
        if rs.get("truncate", True):
            low, high = math.floor(low), math.ceil(high)
        low, high = max(low, 0), min(high, dim - 1)
        if low == high:
            high += 0.001
        ramp = ((torch.arange(dim // 2, dtype=torch.float64) - low) / (high - low)).clamp(0, 1)
        pos_freqs = base ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)
        extra, inter = 1.0 / pos_freqs, 1.0 / (factor * pos_freqs)
        keep = 1 - ramp
        return inter * (1 - keep) + extra * keep, af
    if kind == "llama3":
        inv = default(base)
        low, high, old = rs["low_freq_factor"], rs["high_freq_factor"], rs["original_max_position_embeddings"]
        low_wl, high_wl = old / low, old / high
        wavelen = 2 * math.pi / inv
        inv_l = torch.where(wavelen > low_wl, inv / factor, inv)
        smooth = (old / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * inv_l / factor + smooth * inv_l
        medium = ~(wavelen < high_wl) & ~(wavelen > low_wl)
        return torch.where(medium, smoothed, inv_l), 1.0
    if kind == "longrope":
        omax = cfg.get("original_max_position_embeddings") or rs.get("original_max_position_embeddings") or mpe
        if cfg.get("original_max_position_embeddings") or rs.get("original_max_position_embeddings"):
            factor = mpe / omax
        af = rs.get("attention_factor")
        if af is None:
            af = 1.0 if factor <= 1 else math.sqrt(1 + math.log(factor) / math.log(omax))
        ext = torch.tensor(rs["long_factor"] if seq_len > omax else rs["short_factor"], dtype=torch.float64)
        return 1.0 / (ext * base ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)), af
    raise ValueError(f"unknown rope_type {kind}")


def rms(x, w, eps):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w


def rotate(x, cos, sin):  # x [T, H, D], rotate-half pairing
    h = x.shape[-1] // 2
    rot = torch.cat([-x[..., h:], x[..., :h]], dim=-1)
    return x * cos[:, None, :] + rot * sin[:, None, :]


class _Linear(torch.nn.Module):
    """y = x W^T with an HF-shaped weight [out, in] (no bias), hookable like nn.Linear."""

    def __init__(self, weight):
        super().__init__()
        self.weight = torch.nn.Parameter(weight, requires_grad=False)

    def forward(self, x):
        return x @ self.weight.T


def logit_scale(spec, layer, positions):
    """rotor_logit_scale of config.json, read from its definition (docs/huggingface.md)."""
    if spec is None or spec["kind"] == "none" or layer in spec["skip_layers"]:
        return torch.ones(len(positions))
    if spec["kind"] == "constant":
        return torch.full((len(positions),), float(spec["value"]))
    assert spec["kind"] == "log_position", spec
    t = torch.log(positions.double() + 1) / math.log(spec["base_length"])
    return torch.clamp(t, min=spec["min"])


class IndependentLlama(torch.nn.Module):
    """The HF Llama in float64, with transformers' module names (model.layers[i].
    self_attn.q_proj, ...). apply_logit_scale: multiply each rotated query by
    config.json's rotor_logit_scale (False: ignore it, as transformers does).
    forward(input_ids [1, T], position_ids=None) -> .logits [1, T, V]."""

    def __init__(self, cfg, P, apply_logit_scale=True):
        super().__init__()
        self.cfg, self.apply_logit_scale = cfg, apply_logit_scale
        self.model = torch.nn.Module()
        self.model.layers = torch.nn.ModuleList()
        for layer in range(cfg["num_hidden_layers"]):
            p = f"model.layers.{layer}."
            m = torch.nn.Module()
            m.self_attn = torch.nn.Module()
            for n in ("q_proj", "k_proj", "v_proj", "o_proj"):
                setattr(m.self_attn, n, _Linear(P[p + "self_attn." + n + ".weight"]))
            m.mlp = torch.nn.Module()
            for n in ("gate_proj", "up_proj", "down_proj"):
                setattr(m.mlp, n, _Linear(P[p + "mlp." + n + ".weight"]))
            m.ln1, m.ln2 = P[p + "input_layernorm.weight"], P[p + "post_attention_layernorm.weight"]
            self.model.layers.append(m)
        self.embed, self.norm = P["model.embed_tokens.weight"], P["model.norm.weight"]
        if cfg.get("tie_word_embeddings"):
            assert "lm_head.weight" not in P, "tied export must not hold lm_head.weight"
            self.head = self.embed
        else:
            self.head = P["lm_head.weight"]

    def forward(self, input_ids, position_ids=None, **unused):
        cfg = self.cfg
        H, KV = cfg["num_attention_heads"], cfg["num_key_value_heads"]
        D = cfg.get("head_dim") or cfg["hidden_size"] // H
        eps = cfg["rms_norm_eps"]
        ids = input_ids[0]
        T = len(ids)
        pos = torch.arange(T) if position_ids is None else position_ids[0]
        inv, af = inv_freq_hf(cfg, T)
        ang = pos.double()[:, None] * inv[None, :]
        ang = torch.cat([ang, ang], dim=-1)
        cos, sin = torch.cos(ang) * af, torch.sin(ang) * af
        x = self.embed[ids]
        mask = torch.full((T, T), float("-inf")).triu(1)
        spec = cfg.get("rotor_logit_scale") if self.apply_logit_scale else None
        for layer, m in enumerate(self.model.layers):
            h = rms(x, m.ln1, eps)
            q = m.self_attn.q_proj(h).view(T, H, D)
            k = m.self_attn.k_proj(h).view(T, KV, D)
            v = m.self_attn.v_proj(h).view(T, KV, D)
            q, k = rotate(q, cos, sin), rotate(k, cos, sin)
            q = q * logit_scale(spec, layer, pos)[:, None, None]
            k = k.repeat_interleave(H // KV, dim=1)
            v = v.repeat_interleave(H // KV, dim=1)
            s = torch.einsum("thd,shd->hts", q, k) / math.sqrt(D) + mask
            o = torch.einsum("hts,shd->thd", torch.softmax(s, dim=-1), v).reshape(T, H * D)
            x = x + m.self_attn.o_proj(o)
            h = rms(x, m.ln2, eps)
            x = x + m.mlp.down_proj(torch.nn.functional.silu(m.mlp.gate_proj(h)) * m.mlp.up_proj(h))
        x = rms(x, self.norm, eps)
        return types.SimpleNamespace(logits=(x @ self.head.T)[None])


def load_hf(hf_dir):
    with open(os.path.join(hf_dir, "config.json")) as f:
        cfg = json.load(f)
    return cfg, read_safetensors(os.path.join(hf_dir, "model.safetensors"))


def hf_logits(hf_dir, ids, apply_logit_scale=True):
    cfg, P = load_hf(hf_dir)
    with torch.no_grad():
        return IndependentLlama(cfg, P, apply_logit_scale)(torch.tensor([ids])).logits[0]


def modeling_code_logits(hf_dir, ids):
    """Logits of the exported modeling_rotor_llama.py (the file transformers runs
    with trust_remote_code) on top of IndependentLlama standing in for
    transformers' LlamaForCausalLM (the same module names, the scalar ignored,
    as transformers ignores it). Real transformers: tests/gpu/transformers_parity.py."""
    cfg, P = load_hf(hf_dir)

    class StandInConfig(types.SimpleNamespace):
        pass

    class StandInLlamaForCausalLM(IndependentLlama):
        def __init__(self, config):
            super().__init__(cfg, P, apply_logit_scale=False)

    stand_in = types.ModuleType("transformers")
    stand_in.LlamaConfig, stand_in.LlamaForCausalLM = StandInConfig, StandInLlamaForCausalLM
    saved = sys.modules.get("transformers")
    sys.modules["transformers"] = stand_in
    try:
        spec = importlib.util.spec_from_file_location("modeling_rotor_llama",
                                                      os.path.join(hf_dir, "modeling_rotor_llama.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        if saved is None:
            del sys.modules["transformers"]
        else:
            sys.modules["transformers"] = saved
    model = module.RotorLlamaForCausalLM(StandInConfig(**cfg))
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0]


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        print(" ".join(cmd))
        print(r.stdout[-3000:])
        print(r.stderr[-3000:])
        raise SystemExit(1)
    return r


def write_recipe(path, method, tied, corpus, run_dir):
    """The tiny GQA recipe of `method` (ROPES, LOGIT_SCALES): 2 training steps."""
    with open(path, "w") as f:
        f.write(
            f"model: {{vocab_size: {VOCAB}, hidden_size: {HIDDEN}, intermediate_size: {INTER},\n"
            f"        num_hidden_layers: {LAYERS}, num_attention_heads: {HEADS},\n"
            f"        num_key_value_heads: {KV_HEADS}, max_position_embeddings: {TRAIN_LEN},\n"
            f"        tie_word_embeddings: {'true' if tied else 'false'}}}\n"
            f"rope: {ROPES[method]}\n"
            f"logit_scale: {LOGIT_SCALES.get(method, '{kind: none}')}\n"
            f"data: {{datasets: [{{path: {corpus}}}], sequence_length: {TRAIN_LEN}}}\n"
            f"train: {{steps: 2, global_batch_size: 2, micro_batch_size: 1, lr: 0.01, seed: 3}}\n"
            f"run: {{dir: {run_dir}}}\n")


def write_corpus(rotor, tmp):
    """A byte-level indexed dataset at tmp/corpus."""
    corpus = os.path.join(tmp, "corpus.txt")
    with open(corpus, "w") as f:
        for i in range(200):
            f.write(f"Line {i}: the quick brown fox jumps over the lazy dog {i * i % 97}.\n")
    run([rotor, "prep", "--tokenizer", "bytes", "--input", corpus, "--output", os.path.join(tmp, "corpus")])


def check(rotor, method, tied, tmp):
    name = f"{method}-{'tied' if tied else 'untied'}"
    work = os.path.join(tmp, name)
    os.makedirs(work)
    recipe = os.path.join(work, "recipe.yaml")
    write_recipe(recipe, method, tied, os.path.join(tmp, "corpus"), os.path.join(work, "run"))
    run([rotor, "train", recipe])
    hf = os.path.join(work, "hf")
    scaled = method in LOGIT_SCALES
    run([rotor, "export-hf", os.path.join(work, "run"), hf, "--dtype", "f32"]
        + (["--with-modeling-code"] if scaled else []))
    rng = np.random.default_rng(len(name))
    worst = 0.0
    for n in LENGTHS:
        ids = [int(i) for i in rng.integers(0, 256, size=n)]
        tokens = os.path.join(work, f"ids{n}.txt")
        with open(tokens, "w") as f:
            f.write(" ".join(map(str, ids)) + "\n")
        out = os.path.join(work, f"logits{n}.bin")
        run([rotor, "score", os.path.join(work, "run"), "--tokens", tokens, "--logits", out])
        got = torch.from_numpy(np.fromfile(out, dtype="<f4").astype(np.float64)).view(n, VOCAB)
        want = hf_logits(hf, ids)
        assert torch.isfinite(want).all() and want.abs().max() > 0
        err = (got - want).abs().max().item()
        tol = 1e-4 * want.abs().max().item() + 1e-6
        worst = max(worst, err / tol)
        status = "ok" if err <= tol else "MISMATCH"
        print(f"{name} length {n}: max |rotor - torch| = {err:.3g} (tol {tol:.3g}) {status}")
        if err > tol:
            return False
        if scaled:
            # The scalar matters at this length (the check could fail without it)
            # once positions pass base_length, and the exported modeling file
            # restores it on a Llama that ignores rotor_logit_scale.
            plain = (got - hf_logits(hf, ids, apply_logit_scale=False)).abs().max().item()
            code = (got - modeling_code_logits(hf, ids)).abs().max().item()
            print(f"{name} length {n}: without the scalar {plain:.3g}; "
                  f"modeling_rotor_llama.py {code:.3g} (tol {tol:.3g})")
            if plain <= 10 * tol or code > tol:
                return False
    return True


def main():
    if len(sys.argv) != 3 or sys.argv[2] not in ROPES:
        print(f"usage: hf_parity.py ROTOR_BINARY {{{'|'.join(ROPES)}}}")
        return 2
    rotor, method = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory() as tmp:
        write_corpus(rotor, tmp)
        ok = all(check(rotor, method, tied, tmp) for tied in (False, True))
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
