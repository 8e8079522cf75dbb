"""rotor <-> Hugging Face transformers, both directions, with the real library.

    transformers_parity.py ROTOR_BINARY [--device cuda|cpu]

Needs torch, numpy and transformers (the GPU machines have them; CI does not:
exit 77 = skipped, with the reason printed). The CPU-side proof that runs in CI
is tests/trainer/hf/hf_parity.py (an independent float64 Llama); this script
replaces that stand-in with transformers itself.

1. rotor -> transformers. For every RoPE method (none = theta only, linear,
   dynamic, yarn, llama3, longrope) and for entropy-aware ABF (theta 500000 +
   the log_position logit scalar, exported with --with-modeling-code and loaded
   with trust_remote_code=True), untied and tied, GQA 4/2: a tiny model trained
   2 steps by `rotor train`, exported by `rotor export-hf --dtype f32`, loaded
   with AutoModelForCausalLM.from_pretrained(torch_dtype=float32,
   attn_implementation="eager"); its logits are compared with those of
   `rotor score --logits` at lengths 20, 32 and 80 (below, at and beyond the
   training length 32).
2. transformers -> rotor. A random LlamaForCausalLM created by transformers
   (GQA; untied, tied; rope_scaling none, yarn and llama3) saved with
   save_pretrained (safetensors), imported by `rotor import-hf`, scored by
   `rotor score --logits`, compared with the transformers logits.

Prints the largest relative error max|rotor - hf| / max|hf| per case. Fails
(exit 1) above 1e-4: rotor computes in float32 on the CPU, transformers in
float32 on the device (TF32 matmuls are turned off).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM
except ImportError as e:
    print(f"SKIP: {e} (this check needs torch, numpy and transformers)")
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "trainer", "hf"))
import hf_parity  # noqa: E402  (recipes, the corpus and the command runner)

TOL = 1e-4
LENGTHS = [20, 32, 80]


def rotor_logits(rotor, ckpt, ids, work, vocab):
    tokens = os.path.join(work, f"ids{len(ids)}.txt")
    with open(tokens, "w") as f:
        f.write(" ".join(map(str, ids)) + "\n")
    out = os.path.join(work, f"logits{len(ids)}.bin")
    hf_parity.run([rotor, "score", ckpt, "--tokens", tokens, "--logits", out])
    return torch.from_numpy(np.fromfile(out, dtype="<f4").astype(np.float64)).view(len(ids), vocab)


def hf_model_logits(model, ids, device):
    with torch.no_grad():
        x = torch.tensor([ids], device=device)
        return model(x).logits[0].double().cpu()


def compare(name, got, want):
    assert torch.isfinite(want).all() and want.abs().max() > 0, name
    rel = ((got - want).abs().max() / want.abs().max()).item()
    print(f"{name}: max relative error {rel:.3g} {'ok' if rel <= TOL else 'MISMATCH'}")
    return rel <= TOL


def rotor_to_hf(rotor, tmp, device):
    ok = True
    hf_parity.write_corpus(rotor, tmp)
    for method in hf_parity.ROPES:
        for tied in (False, True):
            name = f"rotor->hf {method} {'tied' if tied else 'untied'}"
            work = os.path.join(tmp, name.replace(" ", "_").replace(">", ""))
            os.makedirs(work)
            recipe = os.path.join(work, "recipe.yaml")
            hf_parity.write_recipe(recipe, method, tied, os.path.join(tmp, "corpus"),
                                   os.path.join(work, "run"))
            hf_parity.run([rotor, "train", recipe])
            hf = os.path.join(work, "hf")
            scaled = method in hf_parity.LOGIT_SCALES
            hf_parity.run([rotor, "export-hf", os.path.join(work, "run"), hf, "--dtype", "f32"]
                          + (["--with-modeling-code"] if scaled else []))
            model = AutoModelForCausalLM.from_pretrained(
                hf, torch_dtype=torch.float32, attn_implementation="eager",
                trust_remote_code=scaled).to(device).eval()
            if scaled:
                assert type(model).__name__ == "RotorLlamaForCausalLM", type(model)
            rng = np.random.default_rng(len(name))
            for n in LENGTHS:
                ids = [int(i) for i in rng.integers(0, 256, size=n)]
                got = rotor_logits(rotor, os.path.join(work, "run"), ids, work, hf_parity.VOCAB)
                ok &= compare(f"{name} length {n}", got, hf_model_logits(model, ids, device))
    return ok


def hf_to_rotor(rotor, tmp, device):
    ok = True
    scalings = {
        "none": None,
        "yarn": {"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 16},
        "llama3": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                   "high_freq_factor": 4.0, "original_max_position_embeddings": 8},
    }
    for kind, scaling in scalings.items():
        for tied in (False, True):
            name = f"hf->rotor {kind} {'tied' if tied else 'untied'}"
            work = os.path.join(tmp, name.replace(" ", "_").replace(">", ""))
            torch.manual_seed(len(name))
            cfg = LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=96,
                              num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                              max_position_embeddings=32, rope_theta=10000.0,
                              rope_scaling=scaling, tie_word_embeddings=tied,
                              initializer_range=0.2)
            model = LlamaForCausalLM(cfg).to(torch.float32).eval()
            model.save_pretrained(os.path.join(work, "hf"), safe_serialization=True)
            ckpt = os.path.join(work, "ckpt")
            hf_parity.run([rotor, "import-hf", os.path.join(work, "hf"), ckpt])
            model = model.to(device)
            rng = np.random.default_rng(len(name))
            for n in LENGTHS:
                ids = [int(i) for i in rng.integers(0, 300, size=n)]
                got = rotor_logits(rotor, ckpt, ids, work, 300)
                ok &= compare(f"{name} length {n}", got, hf_model_logits(model, ids, device))
    return ok


def main():
    p = argparse.ArgumentParser()
    p.add_argument("rotor")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = p.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, device {a.device}")
    with tempfile.TemporaryDirectory() as tmp:
        ok = rotor_to_hf(a.rotor, tmp, a.device)
        ok &= hf_to_rotor(a.rotor, tmp, a.device)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
