"""ctest gpu.check: DIR/check's own behaviour, in a temporary kit with stand-in stages.

    check_test.py

The stand-ins (written here, into a temporary folder) pass, exit without a result, hang
with a child process, write broken JSON, claim a pass while exiting 1, or are missing.
check must record each as README's contract says, keep going, kill what hangs (children
included), respect --only/--limit/--budget, set the stage environment (also for --exec),
unpack the payload once and refuse a damaged one. Stdlib only; about 10 s.
"""
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

STUBS = {
    # env: passes and reports what it saw (environment, a payload tool found on PATH).
    "env": """#!/bin/sh
out=$1
tool=$(payload-tool 2>&1)
cat > "$out/result.json" <<EOF
{"status": "pass", "reason": "", "numbers": {"x": 1.5},
 "seen": {"ROTOR_KIT": "$ROTOR_KIT", "ROTOR_DRY_RUN": "${ROTOR_DRY_RUN:-unset}",
          "ROTOR_REQUIRE_GPU": "$ROTOR_REQUIRE_GPU", "LD_LIBRARY_PATH": "$LD_LIBRARY_PATH",
          "OPAL_PREFIX": "$OPAL_PREFIX", "PMIX_LIBDIR": "${PMIX_LIBDIR:-unset}",
          "PATH": "$PATH", "tool": "$tool"}}
EOF
""",
    "parity": "#!/bin/sh\necho 'dies early'\nexit 3\n",
    # sanitizer: hangs, with a child that would outlive it unless check kills the group.
    "sanitizer": "#!/bin/sh\nsleep 300 &\necho $! > \"$1/child.pid\"\nsleep 300\n",
    "train": "#!/bin/sh\necho '{\"status\": ' > \"$1/result.json\"\n",
    "bench": "#!/bin/sh\necho '{\"status\": \"pass\"}' > \"$1/result.json\"\nexit 1\n",
}


def make_kit(root):
    kit = root / "kit"
    (kit / "stages").mkdir(parents=True)
    shutil.copy2(HERE / "check", kit / "check")
    for name, text in STUBS.items():
        (kit / "stages" / name).write_text(text)
        (kit / "stages" / name).chmod(0o755)
    payload = io.BytesIO()
    with tarfile.open(fileobj=payload, mode="w:xz") as tar:
        data = b"#!/bin/sh\necho from-the-payload\n"
        info = tarfile.TarInfo("bin/payload-tool")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
    (kit / "payload.tar.xz").write_bytes(payload.getvalue())
    manifest = {"payload": {"sha256": hashlib.sha256(payload.getvalue()).hexdigest()},
                "mpi": {"env": {"OPAL_PREFIX": "mpi", "PMIX_LIBDIR": "mpi/pmix/lib"}},
                "source": {"commit": "abc123", "dirty": False}}
    (kit / "manifest.json").write_text(json.dumps(manifest))
    return kit


def check(kit, *args, timeout=120):
    return subprocess.run(["env", "-i", str(kit / "check")] + list(args), capture_output=True,
                          text=True, timeout=timeout)


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"      # a zombie waiting for init is gone
    except FileNotFoundError:
        return False


def expect(cond, what, failures):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def test_all_stages(kit, out, failures):
    t0 = time.monotonic()
    r = check(kit, "--dry-run", "--out", str(out), "--limit", "sanitizer=2")
    wall = time.monotonic() - t0
    expect(r.returncode == 1, f"a failed stage makes check exit 1 (got {r.returncode})", failures)
    s = json.loads((out / "summary.json").read_text())
    got = {x["name"]: x for x in s["stages"]}
    expect(list(got) == ["env", "parity", "sanitizer", "train", "bench", "hf"],
           f"every stage recorded in order: {list(got)}", failures)
    want = {"env": ("pass", ""), "parity": ("fail", "exited with status 3 without writing"),
            "sanitizer": ("fail", "timeout: still running after 2 s"),
            "train": ("fail", "not valid JSON"), "bench": ("fail", "says pass but the stage exited"),
            "hf": ("fail", "stage missing from the kit (stages/hf)")}
    for name, (status, reason) in want.items():
        x = got.get(name, {})
        expect(x.get("status") == status and reason in x.get("reason", ""),
               f"{name}: {status} / {reason!r} (got {x.get('status')} / {x.get('reason')!r})",
               failures)
    expect(wall < 30, f"the hanging stage was cut at its limit ({wall:.1f} s in all)", failures)
    pid = int((out / "sanitizer" / "child.pid").read_text())
    expect(not alive(pid), "the hanging stage's child process was killed too", failures)
    seen = got["env"].get("seen", {})
    expect(seen.get("ROTOR_KIT") == str(kit) and seen.get("ROTOR_DRY_RUN") == "1"
           and seen.get("ROTOR_REQUIRE_GPU") == "1", f"stage environment: {seen}", failures)
    expect(seen.get("LD_LIBRARY_PATH", "").split(":")[0] == str(kit / "lib")
           and seen.get("OPAL_PREFIX") == str(kit / "mpi")
           and seen.get("PMIX_LIBDIR") == str(kit / "mpi/pmix/lib"),
           "kit lib/ first on LD_LIBRARY_PATH, Open MPI relocated as the manifest says", failures)
    expect(seen.get("tool") == "from-the-payload", "the payload was unpacked onto PATH", failures)
    md = (out / "summary.md").read_text()
    expect(all(f"| {n} |" in md for n in want) and "x=1.5" in md,
           "summary.md has a row per stage and the numbers", failures)


def test_budget_and_only(kit, out, failures):
    r = check(kit, "--out", str(out), "--only", "train,sanitizer", "--budget", "6",
              "--limit", "sanitizer=60")
    s = json.loads((out / "summary.json").read_text())
    got = {x["name"]: x for x in s["stages"]}
    expect(list(got) == ["sanitizer", "train"], f"--only keeps the stage order: {list(got)}",
           failures)
    expect("cut to what was left of the budget" in got["sanitizer"]["reason"],
           f"a limit beyond the budget is cut: {got['sanitizer']['reason']!r}", failures)
    expect(got["train"]["reason"].startswith("not run: the check's 6 s budget"),
           f"no budget left: not run ({got['train']['reason']!r})", failures)
    expect(r.returncode == 1, "exit 1", failures)
    r = check(kit, "--exec", "sh", "-c", 'echo "$ROTOR_KIT $ROTOR_REQUIRE_GPU $1"', "sh", "-x")
    expect(r.stdout.strip() == f"{kit} 1 -x",
           f"--exec runs a command in the stage environment ({r.stdout.strip()!r})", failures)
    r = check(kit, "--out", str(out), "--only", "bogus")
    expect(r.returncode == 2 and "unknown stage bogus" in r.stderr,
           f"--only with an unknown stage is refused ({r.returncode})", failures)


def test_unpack(kit, out, failures):
    stamp = (kit / ".unpacked").read_text().strip()
    (kit / "bin" / "payload-tool").unlink()          # unpacked once: not unpacked again
    check(kit, "--dry-run", "--out", str(out), "--only", "env")
    expect(not (kit / "bin" / "payload-tool").exists() and stamp,
           "an unpacked payload is not unpacked again", failures)
    r = check(kit, "--clean")
    expect(r.returncode == 0 and not (kit / "bin").exists() and not (kit / ".unpacked").exists(),
           "--clean removes the unpacked copy", failures)
    data = bytearray((kit / "payload.tar.xz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (kit / "payload.tar.xz").write_bytes(bytes(data))
    r = check(kit, "--dry-run", "--out", str(out))
    expect(r.returncode == 2 and "damaged" in r.stdout,
           f"a damaged payload is refused ({r.returncode}: {r.stdout.strip()[-120:]})", failures)


def main():
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        kit = make_kit(Path(tmp))
        test_all_stages(kit, Path(tmp) / "out1", failures)
        test_budget_and_only(kit, Path(tmp) / "out2", failures)
        test_unpack(kit, Path(tmp) / "out3", failures)
    print(f"{len(failures)} failures" if failures else "PASS")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
