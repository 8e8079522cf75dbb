"""ctest gpu.kit_libs: the rules of tests/gpu/kit_libs.py on canned ldd output and names.

What the GPU machine provides (glibc, libstdc++, libgcc_s, CUDA) is never packed; anything
else is; ldd's "not found", a missing glibc symbol version and the vDSO are told apart.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kit_libs  # noqa: E402

LDD = """\tlinux-vdso.so.1 (0x00007ffd5a9e2000)
\t/k/bin/rotor: /lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.36' not found (required by /k/lib/libevent_core-2.1.so.7)
\tlibyaml-cpp.so.0.7 => /k/lib/libyaml-cpp.so.0.7 (0x00007f1804c00000)
\tlibcudart.so.13 => not found
\tlibstdc++.so.6 => /lib/x86_64-linux-gnu/libstdc++.so.6 (0x00007f3bcc200000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007f3c046f9000)
"""


def main():
    failures = []

    def expect(cond, what):
        print(("ok   " if cond else "FAIL ") + what)
        if not cond:
            failures.append(what)

    got = kit_libs.parse_ldd(LDD)
    want = [("linux-vdso.so.1", "[kernel]"),
            ("GLIBC_2.36 of libc.so.6 (required by libevent_core-2.1.so.7)", None),
            ("libyaml-cpp.so.0.7", "/k/lib/libyaml-cpp.so.0.7"), ("libcudart.so.13", None),
            ("libstdc++.so.6", "/lib/x86_64-linux-gnu/libstdc++.so.6"),
            ("ld-linux-x86-64.so.2", "/lib64/ld-linux-x86-64.so.2")]
    expect(got == want, f"parse_ldd: {got}")
    kinds = {"libc.so.6": "system", "libm.so.6": "system", "libstdc++.so.6": "system",
             "libgcc_s.so.1": "system", "ld-linux-x86-64.so.2": "system",
             "libcuda.so.1": "gpu", "libcudart.so.13": "gpu", "libcublasLt.so.13": "gpu",
             "libcudnn_graph.so.9": "gpu", "libnccl.so.2": "gpu", "libnvrtc.so.13": "gpu",
             "libgomp.so.1": "kit", "libopenblas.so.0": "kit", "libmpi.so.40": "kit",
             "libprotobuf.so.32": "kit", "libabsl_status.so.20220623": "kit",
             "libgfortran.so.5": "kit", "libcurl.so.4": "kit", "libcudaxx.so.1": "kit"}
    for name, kind in kinds.items():
        expect(kit_libs.kind(name) == kind, f"{name}: {kind} (got {kit_libs.kind(name)})")
    expect(kit_libs.FABRIC.match("libucp.so.0") and kit_libs.FABRIC.match("libibverbs.so.1")
           and not kit_libs.FABRIC.match("libudev.so.1"), "fabric libraries")
    expect(kit_libs.glibc_needed(sys.executable) >= (2, 2), "glibc_needed reads an ELF")
    print(f"{len(failures)} failures" if failures else "PASS")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
