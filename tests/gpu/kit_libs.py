"""Which shared libraries the GPU kit carries, and which it leaves to the GPU machine.

Shared by tests/gpu/kit (the packer: what goes into DIR/lib) and the env stage (the check
that every packed ELF resolves inside the kit or to one of these). Python stdlib only.
"""
import os
import re
import shutil
import subprocess

# glibc, the loader, the C++ runtime and libgcc: every Linux machine has them, and a copy of
# glibc from here next to another machine's loader does not work (its pieces must match).
# The C++ runtime is not packed either: the GPU machine's (newer) one is backward compatible.
SYSTEM = re.compile(
    r"^(linux-vdso|ld-linux[-\w.]*|libc|libm|libmvec|libpthread|libdl|librt|libutil|libresolv"
    r"|libanl|libnsl|libBrokenLocale|libnss_\w+|libstdc\+\+|libgcc_s)\.so")

# CUDA: the driver (libcuda) comes with the GPU; the runtime, cuBLAS(Lt), cuDNN, NCCL, NVRTC
# and nvJitLink come from the GPU machine's /usr/local/cuda or its nvidia-* pip packages,
# which match its driver. `check` puts their folders on LD_LIBRARY_PATH.
GPU = re.compile(
    r"^(libcuda|libcudart|libcublas|libcublasLt|libcudnn\w*|libnccl|libnvrtc[-\w.]*"
    r"|libnvJitLink|libnvidia-[-\w]+)\.so")

# OpenMPI plugins that drive InfiniBand/OFI/UCX/PSM hardware. The kit runs on one machine
# (shared memory and TCP between ranks, NCCL between GPUs), so these plugins and their large
# fabric libraries stay behind; OpenMPI picks ob1/vader without them.
FABRIC = re.compile(r"^(libfabric|libuc[pstm]|libpsm\w*|libibverbs|librdmacm|libefa|libmlx\d)\.so")


def kind(soname):
    """'system', 'gpu' or 'kit' (a library the kit must carry)."""
    if SYSTEM.match(soname):
        return "system"
    if GPU.match(soname):
        return "gpu"
    return "kit"


def is_elf(path):
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def ldd_command():
    """ldd, or the loader's own --list (what ldd runs) where ldd is missing."""
    ldd = shutil.which("ldd")
    if ldd:
        return [ldd]
    for loader in ("/lib64/ld-linux-x86-64.so.2", "/lib/ld-linux-aarch64.so.1"):
        if os.path.exists(loader):
            return [loader, "--list"]
    raise RuntimeError("neither ldd nor the dynamic loader was found")


_LINE = re.compile(r"^\s*(\S+)(?:\s+=>\s+(.*?))?\s*(?:\(0x[0-9a-f]+\))?\s*$")
# "\t/kit/bin/rotor: /lib/.../libc.so.6: version `GLIBC_2.36' not found (required by X)"
_VERSION = re.compile(r"^\s*\S+: (\S+): version `([^']+)' not found(?: \(required by (\S+)\))?")


def parse_ldd(text):
    """[(soname, resolved path)] from ldd's output; path None for "not found", "[kernel]"
    for the vDSO. A symbol version the machine's library lacks (an older glibc) reads as
    ("GLIBC_2.36 of libc.so.6 (required by X)", None)."""
    deps = []
    for line in text.splitlines():
        v = _VERSION.match(line)
        if v:
            by = f" (required by {os.path.basename(v.group(3))})" if v.group(3) else ""
            deps.append((f"{v.group(2)} of {os.path.basename(v.group(1))}{by}", None))
            continue
        m = _LINE.match(line)
        if not m:
            continue
        name, where = m.group(1), m.group(2)
        if where is None:                    # /lib64/ld-linux-x86-64.so.2 or linux-vdso.so.1
            deps.append((os.path.basename(name), name if name.startswith("/") else "[kernel]"))
        elif where.startswith("not found"):
            deps.append((name, None))
        elif where.startswith("/"):
            deps.append((name, where))
    return deps


def ldd(path, env=None):
    """parse_ldd of one ELF; [] when it is static. Raises RuntimeError when the loader
    cannot list it (a broken or foreign ELF)."""
    r = subprocess.run(ldd_command() + [path], capture_output=True, text=True, env=env,
                       timeout=60)
    text = r.stdout + r.stderr
    if "not a dynamic executable" in text or "statically linked" in text:
        return []
    if r.returncode != 0 and "not found" not in text:
        raise RuntimeError(f"ldd {path}: status {r.returncode}: {text.strip()[:300]}")
    return parse_ldd(text)


_GLIBC = re.compile(rb"GLIBC_2\.(\d+)(?:\.\d+)?\x00")


def glibc_needed(path):
    """The newest GLIBC_2.x symbol version an ELF names (its .dynstr holds the versions it
    needs), as (2, x); (2, 0) when it names none."""
    with open(path, "rb") as f:
        found = [int(m) for m in _GLIBC.findall(f.read())]
    return (2, max(found, default=0))
