#!/usr/bin/python3
"""Reliability of `rotor train`: no lost work under kills, corrupt files, a
full disk, non-finite values and failing ranks (stdlib only).

    reliability.py ROTOR MPIRUN REPO TEST
      TEST  kill_resume | corrupt_fallback | disk_full | disk_full_enospc | nonfinite | fail_rank

The corpus, the tiny recipe and the runner are train_parity.py's (Env). The
failures are real: SIGKILL from outside at random moments, bytes flipped and
files cut in real checkpoints, a tmpfs too small for a second checkpoint
(ENOSPC) and a file-size limit set on the running process (EFBIG), and,
where a moment must be hit exactly, ROTOR_FAULT (trainer/fault_injection.h):
the shipped binary kills itself at a stage of a checkpoint write, poisons a
weight or a gradient with NaN, or fails on one rank.

Checkpoints are verified here independently of rotor: every file's size and
zlib CRC-32 against state.json, and every F32 tensor of model.safetensors
finite (the safetensors header parsed by hand).

Exactness: training on one rank is deterministic, so a run resumed from a
checkpoint gives the uninterrupted run's losses and gradient norms bit for bit;
the tests compare them with ==.
"""

import array
import json
import math
import os
import random
import re
import resource
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_parity  # noqa: E402
from train_parity import SKIP, Fail, log, metrics  # noqa: E402

STEP_DIR = re.compile(r"^step_\d{8}$")


# --- checks ------------------------------------------------------------------
def complete_steps(run_dir):
    ck = os.path.join(run_dir, "checkpoints")
    if not os.path.isdir(ck):
        return []
    return sorted(int(n[5:]) for n in os.listdir(ck) if STEP_DIR.match(n))


def step_dir(run_dir, step):
    return os.path.join(run_dir, "checkpoints", f"step_{step:08d}")


def verify_checkpoint(d):
    """Raises Fail unless every file of checkpoint `d` matches state.json and
    model.safetensors holds only finite values."""
    try:
        with open(os.path.join(d, "state.json")) as f:
            state = json.load(f)
    except (OSError, ValueError) as err:
        raise Fail(f"{d}: state.json unreadable: {err}")
    for name, want in state["files"].items():
        with open(os.path.join(d, name), "rb") as f:
            data = f.read()
        if len(data) != want["bytes"] or zlib.crc32(data) != want["crc32"]:
            raise Fail(f"{d}/{name}: {len(data)} bytes, crc32 {zlib.crc32(data)}; state.json says {want}")
    with open(os.path.join(d, "model.safetensors"), "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    for name, t in header.items():
        if name == "__metadata__" or t["dtype"] != "F32":
            continue
        b, e = t["data_offsets"]
        values = array.array("f", data[b:e])
        if not all(math.isfinite(v) for v in values):
            raise Fail(f"{d}/model.safetensors: {name} holds NaN or inf")


def check_no_partial(run_dir):
    """Every checkpoint directory is complete and verifies; leftovers of a
    killed save may only be .tmp-<pid> directories (the next save removes them)."""
    ck = os.path.join(run_dir, "checkpoints")
    if not os.path.isdir(ck):
        return
    for n in os.listdir(ck):
        if STEP_DIR.match(n):
            verify_checkpoint(os.path.join(ck, n))
        elif not (n == "latest" or ".tmp-" in n):
            raise Fail(f"{ck}: unexpected entry {n}")


def same_numbers(name, ref, got):
    """Loss, grad_norm and held-out losses of every step, bit for bit."""
    if [m["step"] for m in got] != [m["step"] for m in ref]:
        raise Fail(f"{name}: steps {[m['step'] for m in got]}, expected {[m['step'] for m in ref]}")
    for a, b in zip(ref, got):
        for k in a:
            if (k in ("loss", "grad_norm", "lr") or k.startswith("eval_")) and a[k] != b.get(k):
                raise Fail(f"{name}: step {a['step']} {k} {b.get(k)!r}, uninterrupted run {a[k]!r}")
    log(f"  {name}: {len(got)} steps equal to the uninterrupted run's (loss, grad_norm, lr, eval)")


# --- running -----------------------------------------------------------------
def rank_pids(marker, rank):
    """PIDs of processes whose command line contains `marker` and whose
    environment has OMPI_COMM_WORLD_RANK=<rank>."""
    want = f"OMPI_COMM_WORLD_RANK={rank}".encode()
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmdline = f.read()
            if marker.encode() not in cmdline:
                continue
            with open(f"/proc/{d}/environ", "rb") as f:
                environ = f.read().split(b"\0")
        except OSError:
            continue
        if want in environ:
            pids.append(int(d))
    return pids


def run(e, args, env_extra=None, np=0, timeout=300):
    """Runs rotor train (np 0: one process, else under mpirun); returns
    (exit status, output)."""
    cmd = [e.rotor, "train", e.recipe] + args if np == 0 else e.mpirun_cmd(np, ["train", e.recipe] + args)
    env = dict(e.env)
    env.update(env_extra or {})
    if np and env_extra:
        for k in env_extra:
            cmd[1:1] = ["-x", k]
    r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=timeout)
    return r.returncode, r.stdout


def sets(run_dir, *extra):
    args = ["--set", f"run.dir={run_dir}"]
    for s in extra:
        args += ["--set", s]
    return args


# --- tests -------------------------------------------------------------------
def test_kill_resume(e):
    """20 kills -9 of a run, during steps and during checkpoint writes; every
    restart resumes from the newest complete checkpoint, and the finished run's
    numbers are the uninterrupted run's."""
    steps = 80
    base = [f"train.steps={steps}", "checkpoint.interval=2", "checkpoint.keep=3", "eval.interval=4"]
    ref_dir = os.path.join(e.tmp, "runs", "uninterrupted")
    rc, out = run(e, sets(ref_dir, *base))
    if rc != 0:
        raise Fail(f"uninterrupted run exited {rc}:\n{out}")
    ref = metrics(ref_dir)
    # Seconds per step (8 sequences of 64 tokens), the median over the run.
    step_s = sorted(8 * 64 / m["tokens_per_s"] for m in ref)[len(ref) // 2]
    log(f"  uninterrupted: {steps} steps, {step_s * 1e3:.1f} ms per step")
    run_dir = os.path.join(e.tmp, "runs", "killed")
    rng = random.Random(20261123)
    # 8 kills at exact moments through ROTOR_FAULT: at each of the 4 stages of
    # a checkpoint write, and at the start of a step; 12 at random times.
    plan = [f"kill_checkpoint:step={{s}},stage={k}" for k in (1, 2, 3, 4, 1, 2, 3, 4)]
    plan += ["random"] * 12
    rng.shuffle(plan)
    plan[3] = "kill:step={s}"
    kills = resumes = 0
    for i, what in enumerate(plan):
        before = complete_steps(run_dir)
        newest = before[-1] if before else 0
        if newest >= steps:
            raise Fail(f"the run finished after {kills} kills; plan too slow")
        env = dict(e.env)
        if what != "random":
            # A checkpoint step (even) after the newest one.
            env["ROTOR_FAULT"] = what.format(s=newest + 2)
        cmd = [e.rotor, "train", e.recipe] + sets(run_dir, *base)
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = []
        reader = threading.Thread(target=lambda: lines.extend(p.stdout), daemon=True)
        reader.start()
        if what == "random":
            # Once the process is training (its first progress line), after 0
            # to 4 more steps (metrics.jsonl was cut back to the checkpoint's
            # step), at a random moment of a step.
            k = rng.randint(0, 4)
            deadline = time.time() + 120
            while (not any(line.startswith("step ") for line in list(lines))
                   or len(metrics_lines(run_dir)) < newest + 1 + k):
                if p.poll() is not None or time.time() > deadline:
                    break
                time.sleep(0.002)
            time.sleep(rng.uniform(0, 1.5) * step_s)
            p.send_signal(signal.SIGKILL)
        p.wait(timeout=300)
        reader.join(timeout=60)
        out = "".join(lines)
        if p.returncode == 0:
            raise Fail(f"kill {i + 1} ({what}): the run finished before the kill:\n{out}")
        if p.returncode != -signal.SIGKILL:
            raise Fail(f"kill {i + 1} ({what}): exit status {p.returncode}, not SIGKILL:\n{out}")
        kills += 1
        m = re.search(r"resumed from (\S+) \(step (\d+)\)", out)
        if before:
            # The newest complete checkpoint of the last kill, never a partial one.
            if m is None or int(m.group(2)) != newest or not m.group(1).endswith(f"step_{newest:08d}"):
                raise Fail(f"kill {i + 1}: expected a resume from step {newest}:\n{out}")
            resumes += 1
        elif m is not None:
            raise Fail(f"kill {i + 1}: resumed with no complete checkpoint:\n{out}")
        try:
            check_no_partial(run_dir)
        except Fail as f:
            raise Fail(f"kill {i + 1} ({what}): {f}\n{out}")
        after = complete_steps(run_dir)
        log(f"  kill {i + 1:2d} ({what.split(':')[0]}{'' if what == 'random' else ' ' + env['ROTOR_FAULT']}):"
            f" checkpoints {after}")
    rc, out = run(e, sets(run_dir, *base))
    if rc != 0 or "resumed from" not in out:
        raise Fail(f"final run exited {rc}:\n{out}")
    check_no_partial(run_dir)
    log(f"  {kills} kills, {resumes} resumes checked")
    same_numbers("killed 20 times", ref, metrics(run_dir))


def metrics_lines(run_dir):
    try:
        with open(os.path.join(run_dir, "metrics.jsonl")) as f:
            return [line for line in f if line.endswith("\n")]
    except OSError:
        return []


def flip_byte(path, at):
    with open(path, "r+b") as f:
        f.seek(at)
        b = f.read(1)
        f.seek(at)
        f.write(bytes([b[0] ^ 0x40]))


def test_corrupt_fallback(e):
    """A flipped byte or a cut file in the newest checkpoint: named, and the
    run resumes from the previous complete one, to the same numbers."""
    base = ["train.steps=10", "checkpoint.interval=2", "eval.interval=5"]
    ref_dir = e.train("reference", 0, base)
    ref = metrics(ref_dir)
    run_dir = os.path.join(e.tmp, "runs", "corrupt")
    shutil.copytree(ref_dir, run_dir)
    # step 10: a flipped byte in the middle of the weights; step 8: optimizer cut short.
    model10 = os.path.join(step_dir(run_dir, 10), "model.safetensors")
    flip_byte(model10, os.path.getsize(model10) // 2)
    opt8 = os.path.join(step_dir(run_dir, 8), "optimizer.safetensors")
    os.truncate(opt8, os.path.getsize(opt8) - 100)
    rc, out = run(e, sets(run_dir, *base))
    if rc != 0:
        raise Fail(f"resume exited {rc}:\n{out}")
    print(out, end="")
    for pattern in (r"step_00000010 is unusable: \S*step_00000010/model\.safetensors: checksum mismatch",
                    r"step_00000008 is unusable: \S*step_00000008/optimizer\.safetensors: checksum mismatch",
                    r"resumed from \S*step_00000006 \(step 6\)"):
        if not re.search(pattern, out):
            raise Fail(f"output lacks /{pattern}/")
    same_numbers("resumed past two corrupt checkpoints", ref, metrics(run_dir))
    check_no_partial(run_dir)  # steps 8 and 10 rewritten whole
    # Nothing usable: an error naming every checkpoint, and no fresh start.
    bad_dir = os.path.join(e.tmp, "runs", "all-corrupt")
    shutil.copytree(ref_dir, bad_dir)
    for s in complete_steps(bad_dir):
        os.truncate(os.path.join(step_dir(bad_dir, s), "model.safetensors"), 1000)
    before = open(os.path.join(bad_dir, "metrics.jsonl")).read()
    rc, out = run(e, sets(bad_dir, *base))
    print(out, end="")
    if rc == 0 or "no usable checkpoint in" not in out or out.count("checksum mismatch") < 5:
        raise Fail(f"all checkpoints cut: exit {rc}, expected an error naming each:\n{out}")
    if open(os.path.join(bad_dir, "metrics.jsonl")).read() != before:
        raise Fail("metrics.jsonl changed by a run that found no usable checkpoint")
    log("  every checkpoint unusable: error naming each, metrics.jsonl untouched")


def test_disk_full(e):
    """The file-size limit of the running process drops below a checkpoint's
    size (writes fail with EFBIG as on a full disk): the run stops with an error
    naming the file, the previous checkpoint is intact and no partial one is
    left; the run then resumes to the uninterrupted run's numbers."""
    base = ["train.steps=30", "checkpoint.interval=2", "eval.interval=0"]
    ref = metrics(e.train("reference", 0, base))
    run_dir = os.path.join(e.tmp, "runs", "disk-full")
    cmd = [e.rotor, "train", e.recipe] + sets(run_dir, *base)
    p = subprocess.Popen(cmd, env=e.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while not complete_steps(run_dir):
        if p.poll() is not None or time.time() > deadline:
            raise Fail(f"no checkpoint appeared (exit {p.poll()}):\n{p.communicate()[0]}")
        time.sleep(0.002)
    limit = 16 * 1024  # bytes: below model.safetensors, above metrics.jsonl
    resource.prlimit(p.pid, resource.RLIMIT_FSIZE, (limit, limit))
    out, _ = p.communicate(timeout=300)
    print(out, end="")
    steps = complete_steps(run_dir)
    pattern = r"checkpoint of step (\d+) not saved \(the previous checkpoints are intact\): .*File too large"
    m = re.search(pattern, out)
    if p.returncode != 1 or m is None:
        raise Fail(f"exit {p.returncode}; expected 1 and /{pattern}/")
    if not steps or int(m.group(1)) != steps[-1] + 2:
        raise Fail(f"failed step {m.group(1)}, complete checkpoints {steps}")
    if any(".tmp-" in n for n in os.listdir(os.path.join(run_dir, "checkpoints"))):
        raise Fail("a partial checkpoint directory was left behind")
    with open(os.path.join(run_dir, "checkpoints", "latest")) as f:
        if f.read().strip() != f"step_{steps[-1]:08d}":
            raise Fail("latest does not name the last complete checkpoint")
    check_no_partial(run_dir)
    log(f"  step {m.group(1)} failed to save; step {steps[-1]} intact, no partial directory")
    rc, out = run(e, sets(run_dir, *base))
    if rc != 0 or f"(step {steps[-1]})" not in out:
        raise Fail(f"resume exited {rc}:\n{out}")
    same_numbers("resumed after the full disk", ref, metrics(run_dir))


def test_disk_full_enospc(e):
    """A real full disk: the run directory on a tmpfs of 600 KiB (a private
    mount namespace: `unshare -m`, root) holds one checkpoint (~390 KiB) but not
    a second: the save of step 4 fails with ENOSPC naming the file, step 2 is
    intact, no partial directory is left; copied out, the run resumes to the
    uninterrupted run's numbers. Skipped (77) where mounts are not allowed."""
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if probe.returncode != 0:
        log(f"SKIP: cannot mount a tmpfs in a private mount namespace here: {probe.stdout.strip()}")
        return SKIP
    base = ["train.steps=6", "checkpoint.interval=2", "checkpoint.keep=1", "eval.interval=0"]
    ref = metrics(e.train("reference", 0, base))
    mnt = os.path.join(e.tmp, "small-disk")
    out_dir = os.path.join(e.tmp, "copied")
    os.makedirs(mnt)
    inner = os.path.join(mnt, "run")
    train = " ".join([e.rotor, "train", e.recipe] + sets(inner, *base))
    script = (f"mount -t tmpfs -o size=600k tmpfs {mnt} || exit 99; {train}; rc=$?; "
              f"df -k {mnt} | tail -n 1; cp -a {inner} {out_dir}; exit $rc")
    r = subprocess.run(["unshare", "-m", "sh", "-c", script], env=e.env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=300)
    print(r.stdout, end="")
    pattern = (r"checkpoint of step 4 not saved \(the previous checkpoints are intact\): "
               r"\S*step_00000004\.tmp-\d+/\S+: write failed \(No space left on device\)")
    if r.returncode != 1 or not re.search(pattern, r.stdout):
        raise Fail(f"exit {r.returncode}; expected 1 and /{pattern}/")
    if complete_steps(out_dir) != [2] or any(".tmp-" in n for n in os.listdir(os.path.join(out_dir, "checkpoints"))):
        raise Fail(f"checkpoints left: {os.listdir(os.path.join(out_dir, 'checkpoints'))}")
    check_no_partial(out_dir)
    log("  ENOSPC at the step-4 save: error names the file, step 2 intact, no partial directory")
    rc, out = run(e, sets(out_dir, *base))
    if rc != 0 or "(step 2)" not in out:
        raise Fail(f"resume exited {rc}:\n{out}")
    same_numbers("resumed after ENOSPC", ref, metrics(out_dir))


def test_nonfinite(e):
    """NaN in activations or gradients: never applied, logged with the step
    and the first layer; stop ends the run with its checkpoints finite, skip
    drops the step and goes on."""
    base = ["train.steps=8", "checkpoint.interval=2", "eval.interval=0"]
    # stop (the default), one rank and cp 2 x dp 2 (the diagnosis is collective).
    for np, layout in ((0, []), (4, ["parallel.cp=2"])):
        run_dir = os.path.join(e.tmp, "runs", f"stop-{np}")
        rc, out = run(e, sets(run_dir, *base, *layout), {"ROTOR_FAULT": "nan_activation:step=5,layer=1"}, np=np)
        print(out, end="")
        pattern = (r"step 5: non-finite loss \(nan\) and gradient norm \(nan\); first non-finite activation: "
                   r"the output of layer 1; .*stopping \(train.on_nonfinite: stop\)")
        if rc == 0 or not re.search(pattern, out):
            raise Fail(f"np {np}: exit {rc}; expected /{pattern}/")
        if complete_steps(run_dir) != [2, 4]:
            raise Fail(f"np {np}: checkpoints {complete_steps(run_dir)}, expected [2, 4]")
        check_no_partial(run_dir)
        log(f"  stop, {np or 1} rank(s): stopped at step 5 naming layer 1; checkpoints 2 and 4 finite")
    # skip: a NaN gradient in layer 0 at step 3; the run goes on and finishes.
    run_dir = os.path.join(e.tmp, "runs", "skip")
    rc, out = run(e, sets(run_dir, *base, "train.on_nonfinite=skip"), {"ROTOR_FAULT": "nan_grad:step=3,layer=0"})
    print(out, end="")
    if rc != 0:
        raise Fail(f"skip: exit {rc}")
    m = metrics(run_dir)
    rec = m[2]
    if rec["step"] != 3 or "loss" in rec or "model.layers.0.mlp.down_proj.weight (layer 0)" not in rec.get("skipped", ""):
        raise Fail(f"skip: step 3's record {rec}")
    if not all(math.isfinite(r["loss"]) for r in m if r["step"] != 3) or len(m) != 8:
        raise Fail(f"skip: records {m}")
    check_no_partial(run_dir)
    log(f"  skip: step 3 skipped ({rec['skipped']}); 8 records, the others finite; checkpoints finite")
    # More skips in a row than train.max_skipped_steps: stop.
    run_dir = os.path.join(e.tmp, "runs", "skips")
    rc, out = run(e, sets(run_dir, *base, "train.on_nonfinite=skip", "train.max_skipped_steps=1"),
                  {"ROTOR_FAULT": "nan_activation:step=3,layer=0;nan_activation:step=4,layer=0"})
    print(out, end="")
    if rc == 0 or "step 4: non-finite" not in out or "2 steps in a row skipped" not in out:
        raise Fail(f"max_skipped_steps: exit {rc}")
    log("  two NaN steps in a row with max_skipped_steps 1: stopped at step 4")


def test_fail_rank(e):
    """A rank failing mid-step (an error on one rank) and a rank killed: the
    whole job ends within 60 s naming the rank, and the last checkpoint is
    intact and resumable."""
    base = ["parallel.cp=2", "train.steps=400", "checkpoint.interval=2", "checkpoint.keep=2", "eval.interval=0"]
    run_dir = os.path.join(e.tmp, "runs", "fail-rank")
    t = time.time()
    rc, out = run(e, sets(run_dir, *base), {"ROTOR_FAULT": "fail:step=5,rank=1"}, np=2, timeout=120)
    elapsed = time.time() - t
    print(out, end="")
    if rc == 0 or not re.search(r"rank 1: rotor train: step 5: injected failure", out) or elapsed > 60:
        raise Fail(f"failing rank: exit {rc} after {elapsed:.1f} s")
    if complete_steps(run_dir) != [2, 4]:
        raise Fail(f"checkpoints {complete_steps(run_dir)}, expected [2, 4]")
    check_no_partial(run_dir)
    log(f"  rank 1 failed at step 5: job ended in {elapsed:.1f} s, naming rank 1; checkpoints 2, 4 intact")
    # kill -9 of rank 1 in the middle of the run.
    run_dir = os.path.join(e.tmp, "runs", "kill-rank")
    p = subprocess.Popen(e.mpirun_cmd(2, ["train", e.recipe] + sets(run_dir, *base)), env=e.env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.time() + 120
        while len(complete_steps(run_dir)) < 2:
            if p.poll() is not None or time.time() > deadline:
                raise Fail(f"no two checkpoints (exit {p.poll()})")
            time.sleep(0.05)
        pids = rank_pids(run_dir, 1)
        if len(pids) != 1:
            raise Fail(f"expected one process of rank 1, found {pids}")
        t = time.time()
        os.kill(pids[0], signal.SIGKILL)
        out, _ = p.communicate(timeout=60)
        elapsed = time.time() - t
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    print(out, end="")
    if p.returncode == 0 or not re.search(r"rank 1 with PID [0-9]+ .*signal 9", out):
        raise Fail(f"killed rank: exit {p.returncode}")
    check_no_partial(run_dir)
    last = complete_steps(run_dir)[-1]
    log(f"  rank 1 killed: job ended in {elapsed:.1f} s naming rank 1; checkpoint {last} intact")
    # The last checkpoint resumes (two more steps, on one rank).
    rc, out = run(e, sets(run_dir, *base[1:], f"train.steps={last + 2}"))
    if rc != 0 or f"(step {last})" not in out:
        raise Fail(f"resume from step {last} exited {rc}:\n{out}")
    log(f"  resumed from step {last} and ran to step {last + 2}")


def on_sim(test):
    """`test` with `device: sim` (the checked stand-in device, kernels/sim.h) in
    the recipe, so that every run of it trains through the device path."""
    def run(e):
        with open(e.recipe, "a") as f:
            f.write("device: sim\n")
        return test(e)
    return run


def staged(test):
    """`test` on a staged recipe (trainer/recipe/recipe.h: stages) of the same
    80 steps: 14 at 64 tokens, then 66 at 128 with another theta and learning
    rate; the kills (which reach about step 30) land in both stages, so the
    resumes rebuild either stage and one crosses the boundary."""
    def run(e):
        train_parity.use_staged_recipe(e, 14, 66, "{data.sequence_length: 128, rope.theta: 40000, train.lr: 2.0e-3}")
        return test(e)
    return run


TESTS = {"kill_resume": test_kill_resume, "kill_resume_staged": staged(test_kill_resume),
         "kill_resume_staged_sim": on_sim(staged(test_kill_resume)), "corrupt_fallback": test_corrupt_fallback,
         "disk_full": test_disk_full, "disk_full_enospc": test_disk_full_enospc,
         "nonfinite": test_nonfinite, "fail_rank": test_fail_rank,
         "kill_resume_sim": on_sim(test_kill_resume), "corrupt_fallback_sim": on_sim(test_corrupt_fallback),
         "nonfinite_sim": on_sim(test_nonfinite), "fail_rank_sim": on_sim(test_fail_rank)}


if __name__ == "__main__":
    sys.exit(train_parity.main(sys.argv, TESTS))
