#!/usr/bin/env python3
"""Writes the seed corpora of tests/fuzz/corpus/ (run from anywhere; stdlib only).

safetensors/: valid files (padded and unpadded headers, every dtype rotor
reads, metadata, a scalar, an empty tensor) and a few broken ones.
indexed_dataset/: [u32 LE idx length][.idx][.bin] (the format of
indexed_dataset_one_input in targets.h): valid uint16/int32/uint8/int64
datasets, multimodal modes, and broken ones.
recipe/: the repository's recipes (a `base:` of another recipe becomes
`base: base.yaml`, the valid base the fuzzer writes next to its input) and bad ones.
"""
import json
import os
import re
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CORPUS = os.path.join(HERE, "corpus")


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ------------------------------------------------------------- safetensors
SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "U8": 1, "BOOL": 1,
         "I16": 2, "U16": 2}


def safetensors(tensors, metadata=None, pad=True):
    """tensors: list of (name, dtype, shape, bytes-or-None)."""
    header, buf = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, data in tensors:
        n = 1
        for s in shape:
            n *= s
        if data is None:
            data = bytes((i * 7 + 3) & 0xFF for i in range(n * SIZES[dtype]))
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [len(buf), len(buf) + len(data)]}
        buf += data
    h = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * (-(8 + len(h)) % 8)
    return struct.pack("<Q", len(h)) + h + buf


def make_safetensors():
    f32 = struct.pack("<6f", 1.0, -2.5, 0.0, 3.25, 1e-3, -7.0)
    write("safetensors", "f32_2x3", safetensors([("w", "F32", [2, 3], f32)],
                                               {"format": "pt"}))
    write("safetensors", "mixed", safetensors([
        ("a.weight", "F32", [4], None), ("b.bias", "BF16", [2, 2], None),
        ("c", "F16", [3], struct.pack("<3H", 0x3C00, 0x0001, 0x7C00)),
        ("d", "F64", [1, 2], None), ("ids", "I64", [2], None), ("pos", "I32", [2, 1, 1, 1], None)]))
    write("safetensors", "unpadded_bf16", safetensors([("x", "BF16", [3], None),
                                                       ("y", "F32", [1], None)], pad=False))
    write("safetensors", "scalar_and_empty", safetensors([("s", "F32", [], None),
                                                          ("e", "F32", [0, 4], None)]))
    write("safetensors", "other_dtypes", safetensors([("m", "U8", [5], None), ("b", "BOOL", [2], None),
                                                      ("h", "I16", [2], None)]))
    write("safetensors", "metadata_only", safetensors([], {"k": "v", "step": "10"}))
    # Broken: truncated data, overlap, gap, bad JSON, header length past the end.
    good = safetensors([("w", "F32", [2, 3], f32)])
    write("safetensors", "bad_truncated", good[:-4])
    h = b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},' \
        b'"b":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}}'
    write("safetensors", "bad_overlap", struct.pack("<Q", len(h)) + h + b"\0" * 8)
    write("safetensors", "bad_json", struct.pack("<Q", 5) + b'{"a":' + b"\0" * 4)
    write("safetensors", "bad_header_len", struct.pack("<Q", 1 << 40) + b"{}")


# ---------------------------------------------------------- indexed dataset
DT = {"uint8": (1, "B"), "int8": (2, "b"), "int16": (3, "h"), "int32": (4, "i"),
      "int64": (5, "q"), "float64": (6, "d"), "float32": (7, "f"), "uint16": (8, "H")}


def indexed(docs, dtype="uint16", modes=False):
    """docs: list of documents, each a list of sequences (lists of tokens)."""
    code, fmt = DT[dtype]
    item = struct.calcsize(fmt)
    lengths, pointers, doc_idx, binary = [], [], [0], b""
    for doc in docs:
        for seq in doc:
            pointers.append(len(binary))
            lengths.append(len(seq))
            binary += struct.pack("<%d%s" % (len(seq), fmt), *seq)
        doc_idx.append(len(lengths))
    n = len(lengths)
    idx = b"MMIDIDX\0\0" + struct.pack("<QBQQ", 1, code, n, len(doc_idx))
    idx += struct.pack("<%di" % n, *lengths) + struct.pack("<%dq" % n, *pointers)
    idx += struct.pack("<%dq" % len(doc_idx), *doc_idx)
    if modes:
        idx += bytes(n)
    assert item
    return idx, binary


def pack_input(idx, binary):
    return struct.pack("<I", len(idx)) + idx + binary


def make_indexed():
    write("indexed_dataset", "uint16_3docs", pack_input(*indexed(
        [[[1, 2, 3, 65535]], [[7], [8, 9]], [[]]], "uint16")))
    write("indexed_dataset", "int32", pack_input(*indexed([[[100000, -1, 5]], [[2**31 - 1]]], "int32")))
    write("indexed_dataset", "uint8_modes", pack_input(*indexed([[[1, 2], [3]]], "uint8", modes=True)))
    write("indexed_dataset", "int64_big", pack_input(*indexed([[[1, 2**40]]], "int64")))
    write("indexed_dataset", "float32", pack_input(*indexed([[[1.5, 2.0]]], "float32")))
    write("indexed_dataset", "empty_dataset", pack_input(*indexed([], "uint16")))
    idx, binary = indexed([[[1, 2, 3]]], "int16")
    write("indexed_dataset", "bad_truncated_bin", pack_input(idx, binary[:-2]))
    write("indexed_dataset", "bad_magic", pack_input(b"MMIDIDY" + idx[7:], binary))


# ------------------------------------------------------------------ recipe
def make_recipes():
    for sub in ("demo", "methods", "paper"):
        d = os.path.join(ROOT, "recipes", sub)
        for name in sorted(os.listdir(d)):
            if not name.endswith(".yaml"):
                continue
            with open(os.path.join(d, name)) as f:
                text = f.read()
            text = re.sub(r"(?m)^base:.*$", "base: base.yaml", text)
            write("recipe", "%s_%s" % (sub, name), text)
    write("recipe", "bad_unknown_key", "model: {hidden_sise: 4}\n")
    write("recipe", "bad_type", "train: {steps: ten}\n")
    write("recipe", "bad_cycle", "base: input.yaml\n")
    write("recipe", "bad_yaml", "model: [1, 2\n")
    write("recipe", "bad_tp", "base: base.yaml\nparallel: {tp: 3}\n")
    write("recipe", "sweep_small", "base: base.yaml\nsweep: {train.lr: [1.0e-3, 2.0e-3], "
          "rope.theta: [10000, 500000]}\n")
    write("recipe", "anchors", "base: base.yaml\ntrain: &t {steps: 4, lr: 0.01}\n"
          "eval: {lengths: [8, 16]}\nlogit_scale: {kind: log_position, base_length: 8}\n")


if __name__ == "__main__":
    make_safetensors()
    make_indexed()
    make_recipes()
