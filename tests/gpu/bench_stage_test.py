#!/usr/bin/env python3
"""tests/gpu/stages/bench without a GPU: the stage's bookkeeping (running,
time limits, reading every bench's output, the pass/fail rules, dry run)
checked against stand-in programs, so that a bug in it is found here and
not in the minutes of a GPU lease.

Each stand-in (one script, copied under every bench's and peer's name into
a temporary kit) writes what the real program writes (the same CSV headers:
checked against the sources below) with made-up values, and misbehaves on
request: FAKE_FAULTS="fault:program,..." with fault nan (non-finite values),
crash (exit 134), exit77 (torch missing), nogpu (the skip line), hang
(writes its first rows, then sleeps past its limit).

With ROTOR_BENCH_BIN_DIR set (CUDA builds: the build's bin/), the dry run is
also checked against the real bench binaries and peer scripts.
"""
import json
import math
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
STAGE = os.path.join(HERE, "stages", "bench")
BENCHES = ["attention_bench", "gemm_bench", "memory_bench", "gpu_train_step_bench"]
PEERS = ["sdpa_peer.py", "matmul_peer.py", "hf_train_step_peer.py"]

HEADERS = {  # the stand-ins' CSV headers, which must be the real programs'
    "sdpa_peer.py": "seq,batch,hq,hkv,d,backend,fwd_ms,bwd_ms",
    "attention_bench.cc": "seq,batch,fwd_ms,fwd_tflops,bwd_ms,bwd_tflops,backend,peer_fwd_ms,peer_bwd_ms,fwd_ratio,bwd_ratio",
    "matmul_peer.py": "model,layer,pass,m,n,k,variant,ms",
    "gemm_bench.cc": "model,layer,pass,m,n,k,ms,tflops,ratio,peer_variant,ratio_bf16_out",
    "memory_bench.cc": "kernel,bytes,ms,gbps,copy_ms,copy_gbps,ratio",
}
# JSON keys the stage reads from gpu_train_step_bench's output and the peer's.
TRAIN_KEYS = ["tokens_per_s", "mfu", "peak_bytes", "step_s", "loss", "peak_tflops", "ratio_tokens_per_s",
              "ratio_peak_bytes"]

FAKE = r'''#!/usr/bin/env python3
import json, os, sys, time
HEADERS = __HEADERS__
name = os.path.basename(sys.argv[0])
args = sys.argv[1:]
faults = {}
for f in filter(None, os.environ.get("FAKE_FAULTS", "").split(",")):
    fault, prog = f.split(":")
    faults[prog] = fault
fault = faults.get(name)


def opt(k):
    return args[args.index(k) + 1] if k in args else None


if "--help" in args:
    print(f"usage: {name} ...")
    sys.exit(0)
if "--cpu-check" in args:
    print("cpu-check: ok")
    sys.exit(0)
if os.environ.get("CUDA_VISIBLE_DEVICES") == "" or fault == "nogpu":
    print("skipped: no usable CUDA device")
    sys.exit(0)
if fault == "exit77":
    print("skipped: No module named 'torch'")
    sys.exit(77)
if fault == "crash":
    print("CHECK failed: a kernel faulted", file=sys.stderr)
    sys.exit(134)
x = (lambda v: float("nan")) if fault == "nan" else (lambda v: v)


def rows_out(path, header, rows):
    with open(path, "w") as f:
        f.write(header + "\n")
        for i, r in enumerate(rows):
            f.write(",".join(str(v) for v in r) + "\n")
            f.flush()
            if fault == "hang" and i == 1:
                time.sleep(600)


SEQS = [4096, 16384, 65536]
LAYERS = ["q", "k", "v", "o", "gate", "up", "down"]
if name == "sdpa_peer.py":
    rows_out(opt("--out"), HEADERS["sdpa_peer.py"],
             [[s, max(1, 16384 // s), 32, 8, 128, b, 1.0, 2.5] for s in SEQS for b in ("flash", "cudnn")])
elif name == "attention_bench":
    peer = opt("--peer-csv")
    backends = ["cudnn", "flash"] if peer else [""]
    r = 1.25 if peer else float("nan")
    rows_out(opt("--csv"), HEADERS["attention_bench.cc"],
             [[s, max(1, 16384 // s), 0.8, x(400.0), 2.0, x(380.0), b, 1.0, 2.5, r, r] for s in SEQS for b in backends])
elif name == "matmul_peer.py":
    rows_out(opt("--out"), HEADERS["matmul_peer.py"],
             [[m, l, p, 1, 1, 1, "matmul", 0.1] for m in ("1b", "8b") for l in LAYERS for p in ("fwd", "dgrad", "wgrad")])
elif name == "gemm_bench":
    r = 0.9 if opt("--peer-csv") else float("nan")
    rows_out(opt("--csv"), HEADERS["gemm_bench.cc"],
             [[m, l, p, 4096, 2048, 2048, 2 * 4096 * 2048 * 2048 / 600e9, x(600.0), r, "matmul" if r == r else "", r]
              for m in ("1b", "8b") for l in LAYERS for p in ("fwd", "dgrad", "wgrad")])
elif name == "memory_bench":
    kernels = ["rmsnorm_fwd", "rmsnorm_bwd", "add", "cast_f32_bf16", "cast_bf16_f32", "swiglu_fwd", "swiglu_bwd",
               "rope_fwd", "embedding_fwd", "embedding_bwd", "adamw"]
    rows_out(opt("--csv"), HEADERS["memory_bench.cc"], [[k, 1e9, 0.3, x(3300.0), 0.25, 4000.0, 0.83] for k in kernels])
elif name == "hf_train_step_peer.py":
    mode = {"tokens_per_s": 50000.0, "step_s": 0.08, "first_step_s": 2.0, "timed_steps": 5,
            "peak_bytes": 30e9, "loss": 10.4}
    json.dump({"modes": {"amp": mode, "bf16": dict(mode, tokens_per_s=60000.0)}}, open(opt("--out"), "w"))
elif name == "gpu_train_step_bench":
    if fault == "hang":
        time.sleep(600)
    tps, peak = x(40000.0), 25e9
    j = {"tokens_per_s": tps, "mfu": tps * 6.5e9 / 989e12, "peak_bytes": peak, "step_s": 0.1, "loss": 10.4,
         "peak_tflops": 989.0, "peer": {}}
    if opt("--peer-json"):
        for mode, m in json.load(open(opt("--peer-json")))["modes"].items():
            j["peer"][mode] = {"tokens_per_s": m["tokens_per_s"], "peak_bytes": m["peak_bytes"],
                               "mfu": m["tokens_per_s"] * 6.5e9 / 989e12,
                               "ratio_tokens_per_s": tps / m["tokens_per_s"], "ratio_peak_bytes": peak / m["peak_bytes"]}
    json.dump(j, open(opt("--json"), "w"))
'''


def make_kit(tmp, leave_out=()):
    kit = os.path.join(tmp, "kit")
    os.makedirs(os.path.join(kit, "bin"))
    os.makedirs(os.path.join(kit, "py"))
    text = FAKE.replace("__HEADERS__", repr(HEADERS))
    for name in BENCHES + PEERS:
        if name in leave_out:
            continue
        path = os.path.join(kit, "py" if name.endswith(".py") else "bin", name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return kit


def run_stage(kit, out, **env):
    e = dict(os.environ, ROTOR_KIT=kit)
    e.pop("ROTOR_DRY_RUN", None)
    e.pop("CUDA_VISIBLE_DEVICES", None)
    e.update(env)
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, STAGE, out], env=e, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    with open(os.path.join(out, "result.json")) as f:
        r = json.load(f)
    r["_wall"] = time.monotonic() - t0
    return r


class BenchStage(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="bench_stage_")
        self.out = os.path.join(self.tmp, "out")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_headers_match_the_programs(self):
        for src, header in HEADERS.items():
            with open(os.path.join(ROOT, "tests", "bench", src)) as f:
                self.assertIn(header, f.read(), src)
        with open(os.path.join(ROOT, "tests", "bench", "gpu_train_step_bench.cc")) as f:
            text = f.read()
        for key in TRAIN_KEYS:
            self.assertIn(f'"{key}"', text)

    def test_every_bench_ran_gives_pass_and_every_ratio(self):
        r = run_stage(make_kit(self.tmp), self.out)
        self.assertEqual(r["status"], "pass", r["reason"])
        n = r["numbers"]
        for key, want in [("attention.T65536.bwd.ratio_cudnn", 1.25), ("attention.T4096.fwd.ratio_flash", 1.25),
                          ("attention.T16384.fwd_tflops", 400.0), ("gemm.8b.down.wgrad.ratio", 0.9),
                          ("gemm.1b.q.wgrad.ratio_bf16_out", 0.9), ("gemm.1b.geomean_ratio", 0.9),
                          ("memory.adamw.ratio_to_copy", 0.83), ("memory.swiglu_bwd.gbps", 3300.0),
                          ("train.rotor.tokens_per_s", 40000.0), ("train.ratio_tokens_per_s.hf_amp", 0.8),
                          ("train.ratio_tokens_per_s.hf_bf16", 40000.0 / 60000.0)]:
            self.assertAlmostEqual(n[key], want, places=6, msg=key)
        self.assertEqual(len([k for k in n if k.startswith("gemm.") and k.endswith(".tflops")]), 42)
        self.assertEqual(len([k for k in n if k.startswith("memory.") and k.endswith(".ratio_to_copy")]), 11)
        self.assertTrue(all(math.isfinite(v) for v in n.values()))
        with open(os.path.join(self.out, "bench.md")) as f:
            md = f.read()
        self.assertIn("| 65536 | 1 |", md)
        self.assertIn("| HF amp | 50000 |", md)
        with open(os.path.join(self.out, "ring_rates.csv")) as f:
            rates = f.read().splitlines()
        self.assertEqual(rates[0], "kernel,tflops,tokens")
        self.assertIn("attn_bwd,380.0,65536", rates)
        self.assertIn("gemm,600.0,4096", rates)  # 2mnk / ms of the stand-in's rows

    def test_non_finite_number_fails(self):
        r = run_stage(make_kit(self.tmp), self.out, FAKE_FAULTS="nan:memory_bench")
        self.assertEqual(r["status"], "fail")
        self.assertIn("non-finite", r["reason"])
        self.assertNotIn("memory.adamw.gbps", r["numbers"])
        self.assertIn("gemm.1b.geomean_ratio", r["numbers"])  # the other benches still recorded

    def test_crash_fails_and_later_benches_still_run(self):
        r = run_stage(make_kit(self.tmp), self.out, FAKE_FAULTS="crash:attention_bench")
        self.assertEqual(r["status"], "fail")
        self.assertIn("attention: exit 134", r["reason"])
        self.assertIn("train.ratio_tokens_per_s.hf_amp", r["numbers"])

    def test_peer_without_torch_fails_but_rotor_numbers_are_kept(self):
        r = run_stage(make_kit(self.tmp), self.out, FAKE_FAULTS="exit77:matmul_peer.py")
        self.assertEqual(r["status"], "fail")
        self.assertIn("gemm_peer: skipped, exit 77", r["reason"])
        self.assertIn("gemm.8b.up.fwd.tflops", r["numbers"])
        self.assertNotIn("gemm.8b.up.fwd.ratio", r["numbers"])

    def test_no_gpu_in_a_real_run_fails(self):
        r = run_stage(make_kit(self.tmp), self.out, FAKE_FAULTS="nogpu:gpu_train_step_bench")
        self.assertEqual(r["status"], "fail")
        self.assertIn("train: skipped: no usable CUDA device", r["reason"])

    def test_a_hanging_bench_is_stopped_at_its_cap_with_its_rows_kept(self):
        # Scale 0.2: budget 30 s, attention's cap 4.4 s.
        r = run_stage(make_kit(self.tmp), self.out, FAKE_FAULTS="hang:attention_bench", ROTOR_BENCH_TIME_SCALE="0.2")
        self.assertEqual(r["status"], "fail")
        self.assertIn("attention: timed out", r["reason"])
        self.assertIn("attention.T4096.fwd.ratio_flash", r["numbers"])  # the rows written before it hung
        self.assertNotIn("attention.T65536.fwd_tflops", r["numbers"])
        self.assertIn("train.rotor.mfu", r["numbers"])
        self.assertLess(r["_wall"], 30)

    def test_a_peer_cut_short_still_gives_the_ratios_it_measured(self):
        r = run_stage(make_kit(self.tmp), self.out, FAKE_FAULTS="hang:sdpa_peer.py", ROTOR_BENCH_TIME_SCALE="0.2")
        self.assertEqual(r["status"], "fail")
        self.assertIn("attention_peer: timed out", r["reason"])
        self.assertIn("attention.T4096.fwd.ratio_flash", r["numbers"])  # the peer's first rows reached the bench
        self.assertIn("attention.T65536.fwd_tflops", r["numbers"])

    def test_the_budget_bounds_the_stage(self):
        # Every step hangs: the stage still ends inside its (scaled) budget.
        faults = ",".join(f"hang:{p}" for p in BENCHES + PEERS)
        r = run_stage(make_kit(self.tmp), self.out, FAKE_FAULTS=faults, ROTOR_BENCH_TIME_SCALE="0.05")
        self.assertEqual(r["status"], "fail")
        self.assertLess(r["_wall"], 150 * 0.05 + 2)

    def test_dry_run_skips_when_the_kit_is_complete(self):
        r = run_stage(make_kit(self.tmp), self.out, ROTOR_DRY_RUN="1")
        self.assertEqual((r["status"], r["reason"]), ("skipped", "no GPU"))
        self.assertEqual(r["numbers"]["dry_run_checks"], 4 * 2 + 3 + 3)

    def test_dry_run_fails_when_a_bench_is_missing(self):
        r = run_stage(make_kit(self.tmp, leave_out=["gemm_bench", "hf_train_step_peer.py"]), self.out,
                      ROTOR_DRY_RUN="1")
        self.assertEqual(r["status"], "fail")
        self.assertIn("gemm_bench: not in", r["reason"])
        self.assertIn("hf_train_step_peer.py: not in", r["reason"])

    @unittest.skipUnless(os.environ.get("ROTOR_BENCH_BIN_DIR"), "ROTOR_BENCH_BIN_DIR unset (CPU-only build)")
    def test_dry_run_with_the_real_binaries(self):
        kit = os.path.join(self.tmp, "real")
        os.makedirs(os.path.join(kit, "bin"))
        os.makedirs(os.path.join(kit, "py"))
        for b in BENCHES:
            os.symlink(os.path.join(os.environ["ROTOR_BENCH_BIN_DIR"], b), os.path.join(kit, "bin", b))
        for p in PEERS:
            os.symlink(os.path.join(ROOT, "tests", "bench", p), os.path.join(kit, "py", p))
        r = run_stage(kit, self.out, ROTOR_DRY_RUN="1")
        self.assertEqual((r["status"], r["reason"]), ("skipped", "no GPU"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
