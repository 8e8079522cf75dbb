"""ctest gpu.kit: pack the GPU bring-up kit from this build and dry-run it.

    kit_test.py BUILD_DIR ROTOR_WITH_CUDA

Skipped (77) when the build has no CUDA backend. Otherwise: tests/gpu/kit packs a kit from
BUILD_DIR (--no-build: ctest runs after the build) into a temporary folder, which must be
at most 60 MiB as it travels and list every file it carries in manifest.json. Then
`env -i DIR/check --dry-run` (nothing of this shell's environment) must pass: the env stage
resolves every packed ELF inside the kit or to glibc/libstdc++/libgcc_s/CUDA, and every
other stage of tests/gpu/stages skips for want of a GPU. The relocated mpirun starts two
ranks of DIR/bin/rotor. Last, the env stage must fail, naming the cause, on a stand-in
CUDA driver older than the runtime (not a dry run; the stand-in is compiled here), with one
packed library deleted, and with a glibc older than the manifest asks for.
About 20 s on 2 cores.
"""
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
LIMIT = 60 * 2**20


def expect(cond, what, failures):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def run(cmd, timeout=120):
    t0 = time.monotonic()
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout)
    print(f"$ {' '.join(map(str, cmd))}  ({time.monotonic() - t0:.1f} s, status {r.returncode})")
    return r


def travel_size(kit):
    return sum(p.lstat().st_size for p in kit.rglob("*") if not p.is_dir())


def check_pack(kit, failures):
    size = travel_size(kit)
    expect(size <= LIMIT, f"the kit is {size / 2**20:.1f} MiB <= 60 MiB", failures)
    m = json.loads((kit / "manifest.json").read_text())
    listed = {f["path"] for f in m["files"]}
    actual = {str(p.relative_to(kit)) for p in kit.rglob("*")
              if not p.is_dir() and p.name != "manifest.json"}
    expect(listed == actual, f"manifest.json lists the {len(actual)} files that travel", failures)
    packed = {f["path"] for f in m["payload"]["files"]}
    for path in ("bin/rotor", "bin/kernels_test", "mpi/bin/orterun", "mpi/bin/mpirun"):
        expect(path in packed, f"the payload carries {path}", failures)
    expect(m["build"]["cuda_archs"] == ["sm_80", "sm_90"] and m["source"]["commit"],
           f"manifest: commit {m['source']['commit']}, {m['build']['cuda_archs']}", failures)
    expect(any(n.startswith("libcudart.so") for n in m["gpu_libs"]),
           f"the GPU machine is asked for {', '.join(m['gpu_libs'])}", failures)


def check_dry_run(kit, out, failures):
    present = sorted(p.name for p in (HERE / "stages").iterdir() if p.is_file())
    r = run(["env", "-i", kit / "check", "--dry-run", "--out", out, "--only", ",".join(present)])
    print(r.stdout[-3000:] + r.stderr[-2000:])
    expect(r.returncode == 0, f"env -i DIR/check --dry-run passes (stages {present})", failures)
    s = json.loads((out / "summary.json").read_text())
    got = {x["name"]: x for x in s["stages"]}
    env = got.get("env", {})
    expect(env.get("status") == "pass" and env.get("numbers", {}).get("unresolved") == 0
           and env.get("numbers", {}).get("elfs", 0) > 50,
           f"env: every packed ELF resolves ({env.get('reason')!r})", failures)
    for name in present:
        if name != "env":
            expect(got.get(name, {}).get("status") == "skipped",
                   f"{name}: skipped without a GPU ({got.get(name, {}).get('reason')!r})", failures)


def check_mpirun(kit, failures):
    r = run(["env", "-i", kit / "mpi/bin/mpirun", "--allow-run-as-root", "--oversubscribe",
             "-np", "2", kit / "bin/rotor", "--help"], timeout=60)
    expect(r.returncode == 0 and (r.stdout + r.stderr).count("usage: rotor") == 2,
           f"the kit's mpirun starts 2 ranks of rotor ({(r.stdout + r.stderr)[-300:]!r})", failures)


def check_detects_missing(kit, out, failures):
    victim = next(p for p in sorted((kit / "lib").iterdir()) if p.name.startswith("libyaml-cpp"))
    victim.unlink()
    r = run(["env", "-i", kit / "check", "--dry-run", "--out", out, "--only", "env"])
    env = json.loads((out / "summary.json").read_text())["stages"][0]
    expect(r.returncode == 1 and env["status"] == "fail" and victim.name in env["reason"],
           f"without {victim.name} the env stage fails naming it ({env['reason']!r})", failures)


FAKE_DRIVER = r"""
// A stand-in CUDA driver (libcuda.so.1) for the env stage: device 0 is a "Fake H200"
// with 132 SMs, compute capability 9.0, 141 GiB, and the driver supports CUDA 12.4.
#include <stdio.h>
#include <stddef.h>
int cuInit(unsigned flags) { return 0; }
int cuDriverGetVersion(int* v) { *v = 12040; return 0; }
int cuDeviceGetCount(int* n) { *n = 1; return 0; }
int cuDeviceGet(int* d, int i) { *d = 0; return 0; }
int cuDeviceGetName(char* s, int len, int d) { snprintf(s, len, "Fake H200"); return 0; }
int cuDeviceGetAttribute(int* v, int attr, int d) {
  *v = attr == 16 ? 132 : attr == 75 ? 9 : 0;   // SM count, cc major, cc minor
  return 0;
}
int cuDeviceTotalMem_v2(size_t* bytes, int d) { *bytes = (size_t)141 << 30; return 0; }
int cuGetErrorName(int r, const char** s) { *s = "CUDA_ERROR_FAKE"; return 0; }
"""


def check_detects_old_driver(kit, tmp, failures):
    """Not a dry run, on a stand-in driver that supports CUDA 12.4 only: the env stage reads
    the device through it and fails naming both the driver's and the runtime's version."""
    fake = tmp / "fake-driver"
    fake.mkdir()
    (fake / "fake.c").write_text(FAKE_DRIVER)
    cc = run(["cc", "-shared", "-fPIC", "-o", fake / "libcuda.so.1", fake / "fake.c"])
    expect(cc.returncode == 0, f"the stand-in driver compiles {cc.stderr[-300:]}", failures)
    run(["env", "-i", f"LD_LIBRARY_PATH={fake}", kit / "check", "--out", tmp / "out-driver",
         "--only", "env"])
    env = json.loads((tmp / "out-driver" / "summary.json").read_text())["stages"][0]
    n = env.get("numbers", {})
    expect(env["status"] == "fail" and env["reason"].startswith(
        "driver too old: it supports CUDA 12.4, the CUDA runtime") and "is 13." in env["reason"],
        f"a driver older than the runtime fails, naming both ({env['reason']!r})", failures)
    expect(n.get("sm_count") == 132 and n.get("compute_capability") == 9.0
           and n.get("driver_cuda") == 12.4 and env.get("info", {}).get("gpu") == "Fake H200",
           f"the device is read through the driver API ({n}, {env.get('info')})", failures)


def check_detects_old_glibc(kit, out, failures):
    """A machine whose glibc is older than the kit needs (here: a manifest asking for 2.99)."""
    path = kit / "manifest.json"
    m = json.loads(path.read_text())
    m["glibc_needed"] = {"version": "2.99", "by": ["bin/rotor"]}
    path.write_text(json.dumps(m))
    run(["env", "-i", kit / "check", "--dry-run", "--out", out, "--only", "env"])
    env = json.loads((out / "summary.json").read_text())["stages"][0]
    expect(env["status"] == "fail" and "older than the 2.99 the kit needs (bin/rotor)"
           in env["reason"], f"an old glibc fails the env stage ({env['reason']!r})", failures)


def main():
    build, with_cuda = Path(sys.argv[1]), sys.argv[2]
    if with_cuda.upper() not in ("ON", "TRUE", "1"):
        print(f"SKIP: {build} has no CUDA backend (ROTOR_WITH_CUDA={with_cuda}); "
              "the kit packs a CUDA build")
        return 77
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        kit, tmp = Path(tmp) / "kit", Path(tmp)
        r = run([HERE / "kit", kit, "--build", build, "--no-build"], timeout=300)
        print(r.stdout + r.stderr[-3000:])
        expect(r.returncode == 0, "tests/gpu/kit packs the kit", failures)
        if r.returncode == 0:
            check_pack(kit, failures)
            check_dry_run(kit, tmp / "out", failures)
            check_mpirun(kit, failures)
            check_detects_old_driver(kit, tmp, failures)
            check_detects_missing(kit, tmp / "out2", failures)
            check_detects_old_glibc(kit, tmp / "out3", failures)
    print(f"{len(failures)} failures" if failures else "PASS")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
