#!/usr/bin/python3
"""Independent check of rotor's TensorBoard event files (trainer/tensorboard.h).

Usage: tb_read.py DIR    (DIR holds the one file tests/trainer/tb_write_sample wrote)

Shares no code with rotor's reader: the CRC-32C comes from Debian's
python3-crcmod and the protobuf wire format is decoded by hand. Checks the
file name, every record's framing and both masked CRCs, that the first Event
is file_version "brain.Event:2" with a current wall time, and that the
scalars are exactly those tb_write_sample.cc writes (float32 tolerance).
Prints every Event. Exit 0: pass, 1: fail, 77: crcmod missing (ctest skip).
"""
import glob
import math
import os
import re
import socket
import struct
import sys
import time

try:
    import crcmod.predefined
except ImportError as e:
    print(f"SKIP: python3-crcmod is not importable ({e}); apt-get install python3-crcmod")
    sys.exit(77)

crc32c = crcmod.predefined.mkCrcFun("crc-32c")

# (step, wall_time, [(tag, value), ...]) in file order; keep in step with
# tests/trainer/tb_write_sample.cc.
EXPECTED = [
    (0, 1700000000.25, [("train/loss", 2.5)]),
    (1, 1700000001.5, [("train/loss", 0.1)]),
    (1 << 40, 1700000002.0, [("train/lr", -3e-4)]),
    (300, 1700000002.75, [("train/grad_norm", 1e10)]),
    (7, 1700000003.125, [("eval/loss", 1.75), ("eval/ppl", 5.75), ("eval/acc", 0.3)]),
]


class Bad(Exception):
    pass


def masked(data):
    c = crc32c(data)
    return ((((c >> 15) | (c << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def varint(buf, i):
    v, shift = 0, 0
    while True:
        if i >= len(buf):
            raise Bad("varint runs past the end")
        b = buf[i]
        i += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return v, i
        if shift > 63:
            raise Bad("varint longer than 10 bytes")


def fields(buf):
    """Yields (field number, wire type, value) of a message; value is an int
    (wire types 0, 1, 5 as raw unsigned) or bytes (wire type 2)."""
    i = 0
    while i < len(buf):
        key, i = varint(buf, i)
        num, wt = key >> 3, key & 7
        if num == 0:
            raise Bad("field number 0")
        if wt == 0:
            v, i = varint(buf, i)
        elif wt == 1:
            if i + 8 > len(buf):
                raise Bad("fixed64 runs past the end")
            v = int.from_bytes(buf[i:i + 8], "little")
            i += 8
        elif wt == 5:
            if i + 4 > len(buf):
                raise Bad("fixed32 runs past the end")
            v = int.from_bytes(buf[i:i + 4], "little")
            i += 4
        elif wt == 2:
            n, i = varint(buf, i)
            if i + n > len(buf):
                raise Bad("length-delimited field runs past the end")
            v = bytes(buf[i:i + n])
            i += n
        else:
            raise Bad(f"unsupported wire type {wt} (field {num})")
        yield num, wt, v


def expect_wt(num, wt, want, msg):
    if wt != want:
        raise Bad(f"{msg} field {num} has wire type {wt}, expected {want}")


def decode_value(buf):
    tag, value = None, None
    for num, wt, v in fields(buf):
        if num == 1:
            expect_wt(num, wt, 2, "Summary.Value")
            tag = v.decode("utf-8")
        elif num == 2:
            expect_wt(num, wt, 5, "Summary.Value")
            value = struct.unpack("<f", v.to_bytes(4, "little"))[0]
    return tag, value


def decode_event(buf):
    ev = {"wall_time": 0.0, "step": 0, "file_version": None, "values": None}
    for num, wt, v in fields(buf):
        if num == 1:
            expect_wt(num, wt, 1, "Event")
            ev["wall_time"] = struct.unpack("<d", v.to_bytes(8, "little"))[0]
        elif num == 2:
            expect_wt(num, wt, 0, "Event")
            ev["step"] = v - (1 << 64) if v >= 1 << 63 else v
        elif num == 3:
            expect_wt(num, wt, 2, "Event")
            ev["file_version"] = v.decode("utf-8")
        elif num == 5:
            expect_wt(num, wt, 2, "Event")
            ev["values"] = []
            for snum, swt, sv in fields(v):
                if snum == 1:
                    expect_wt(snum, swt, 2, "Summary")
                    ev["values"].append(decode_value(sv))
    return ev


def read_records(data):
    off = 0
    while off < len(data):
        if len(data) - off < 12:
            raise Bad(f"offset {off}: truncated header")
        length = int.from_bytes(data[off:off + 8], "little")
        if int.from_bytes(data[off + 8:off + 12], "little") != masked(data[off:off + 8]):
            raise Bad(f"offset {off}: length CRC mismatch")
        end = off + 12 + length
        if end + 4 > len(data):
            raise Bad(f"offset {off}: truncated record")
        body = data[off + 12:end]
        if int.from_bytes(data[end:end + 4], "little") != masked(body):
            raise Bad(f"offset {off}: data CRC mismatch")
        yield off, body
        off = end + 4


def check(directory):
    files = glob.glob(os.path.join(glob.escape(directory), "*tfevents*"))
    if len(files) != 1:
        raise Bad(f"expected one event file in {directory}, found {files}")
    path = files[0]
    name = os.path.basename(path)
    pattern = r"events\.out\.tfevents\.\d{10}\." + re.escape(socket.gethostname()) + r"\.\d+"
    if not re.fullmatch(pattern, name):
        raise Bad(f"file name {name!r} does not match {pattern!r}")
    with open(path, "rb") as f:
        data = f.read()
    events = []
    for off, body in read_records(data):
        ev = decode_event(body)
        print(f"offset {off}: {ev}")
        events.append(ev)
    if not events:
        raise Bad(f"{path}: no records")
    first = events[0]
    if first["file_version"] != "brain.Event:2" or first["values"] is not None:
        raise Bad(f"first Event is not file_version brain.Event:2: {first}")
    if not (time.time() - 3600 < first["wall_time"] <= time.time() + 5):
        raise Bad(f"first Event's wall time {first['wall_time']} is not now")
    rest = events[1:]
    if len(rest) != len(EXPECTED):
        raise Bad(f"{len(rest)} summary Events, expected {len(EXPECTED)}")
    for ev, (step, wall, values) in zip(rest, EXPECTED):
        if ev["file_version"] is not None or ev["values"] is None:
            raise Bad(f"not a summary Event: {ev}")
        if ev["step"] != step or ev["wall_time"] != wall:
            raise Bad(f"step/wall_time {ev['step']}/{ev['wall_time']}, expected {step}/{wall}")
        if len(ev["values"]) != len(values):
            raise Bad(f"{ev['values']}: expected {values}")
        for (tag, value), (want_tag, want) in zip(ev["values"], values):
            # float32 keeps 24 significant bits: relative error <= 2^-24.
            if tag != want_tag or value is None or not math.isclose(value, want, rel_tol=2**-23):
                raise Bad(f"value {tag}={value}, expected {want_tag}={want}")
    print(f"PASS: {path}: {len(events)} records, CRCs and contents as expected")


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    try:
        check(sys.argv[1])
    except Bad as e:
        print(f"FAIL: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
