#!/usr/bin/env python3
"""Writes the corpus of bad inputs in tests/bad_inputs/ and its manifest cases.tsv.

Every file written here must be refused by rotor's loader for its kind with
an error that names the file and contains the expected substrings (checked by
tests/trainer/cli/bad_inputs_test.cc, which reads cases.tsv; the generated files
are committed, so the test needs no Python). Standard library only and
deterministic: running it again rewrites the same bytes.

    python3 tests/bad_inputs/make_cases.py

Kinds (the loader the test runs):
  recipe       recipes/*.yaml               load_recipe (rotor train / sweep)
  safetensors  safetensors/*.safetensors    SafetensorsFile::open (rotor import-hf, checkpoints)
  hf_config    hf_config/*.json             rotor import-hf with the file as HF_DIR/config.json
  indexed      indexed/<case>(.idx, .bin)   IndexedDataset::open (rotor train, eval)
  llmc         llmc/*.bin                   LlmcShard::open
  tokenizer    tokenizers/*.model           make_tokenizer("spm:PATH") (rotor prep, score)

cases.tsv: kind<TAB>file (relative to this folder; for indexed the prefix
without extension)<TAB>expected substrings separated by ' && '. Lines starting
with '#' are comments: rows commented out with "# KNOWN GAP" are inputs the
loader still accepts (or mis-reports); enable them when the loader is fixed.
"""

import json
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
KINDS = ["recipes", "safetensors", "hf_config", "indexed", "llmc", "tokenizers"]
for sub in KINDS:  # start clean, so a renamed case leaves no stale file
    shutil.rmtree(os.path.join(HERE, sub), ignore_errors=True)
ROWS = []  # (kind, file, [substrings]) or ("#", comment)


def write(rel, data):
    path = os.path.join(HERE, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(path, "wb") as f:
        f.write(data)


def case(kind, rel, *expected):
    ROWS.append((kind, rel, list(expected)))


def comment(text):
    ROWS.append(("#", text, None))


# ----------------------------------------------------------------- recipes

GOOD = """model:
  vocab_size: 260
  hidden_size: 64
  intermediate_size: 176
  num_hidden_layers: 2
  num_attention_heads: 4
  num_key_value_heads: 2
data:
  datasets:
    - {path: data/a, weight: 2}
    - {path: data/b}
  sequence_length: 256
train:
  steps: 100
  global_batch_tokens: 4096
  micro_batch_size: 4
  lr: 1.0e-3
  min_lr: 1.0e-4
  warmup_steps: 10
"""


def edit(text, old, new):
    assert old in text, old
    return text.replace(old, new, 1)


def drop(text, line):
    assert line + "\n" in text, line
    return text.replace(line + "\n", "", 1)


def recipe(name, text, *expected):
    write("recipes/" + name + ".yaml", text)
    case("recipe", "recipes/" + name + ".yaml", *expected)


recipe("unknown_key_typo", GOOD + "  lrr: 1\n",
       ":20:3: unknown key 'train.lrr'", "(did you mean 'train.lr'?)")
recipe("unknown_section_typo", GOOD + "trian:\n  steps: 1\n",
       ":20:1: unknown key 'trian'", "(did you mean 'train'?)")
recipe("unknown_key_no_suggestion", GOOD + "  zzzzzz: 1\n",
       ":20:3: unknown key 'train.zzzzzz'", "known keys of train: train.steps")
recipe("unknown_key_in_dataset", edit(GOOD, "{path: data/b}", "{path: data/b, wieght: 1}"),
       ":11:22: unknown key 'data.datasets[1].wieght'", "did you mean")
recipe("wrong_type_integer", edit(GOOD, "steps: 100", "steps: ten"),
       ":14:10: train.steps: expected an integer, got 'ten'")
recipe("wrong_type_fraction_for_integer", edit(GOOD, "steps: 100", "steps: 1.5"),
       ":14:10: train.steps: expected an integer, got '1.5'")
recipe("wrong_type_bool", GOOD + "parallel:\n  zero1: maybe\n",
       ":21:10: parallel.zero1: expected true or false, got 'maybe'")
recipe("wrong_enum_recompute", GOOD + "  recompute: maybe\n",
       ":20:14: train.recompute: expected one of none, full, selective, got 'maybe'")
recipe("tile_tokens_out_of_range", GOOD + "  tile_tokens: 0\n",
       ":20:16: train.tile_tokens must be in [1, 16777216]")
recipe("wrong_type_number", edit(GOOD, "lr: 1.0e-3", "lr: fast"),
       ":17:7: train.lr: expected a number, got 'fast'")
recipe("wrong_type_list", GOOD + "eval:\n  lengths: 1024\n",
       ":21:12: eval.lengths: expected a list such as [a, b], got '1024'")
recipe("wrong_type_section", GOOD + "run: runs/x\n",
       ":20:6: run: expected a mapping (section), got 'runs/x'")
recipe("bad_enum_schedule", GOOD + "  schedule: cosin\n",
       ":20:13: train.schedule: expected one of cosine, linear, constant, got 'cosin'",
       "(did you mean 'cosine'?)")
recipe("bad_enum_device", GOOD + "device: tpu\n",
       ":20:9: device: expected one of cpu, cuda, sim, got 'tpu'")
recipe("bad_rope_method", GOOD + "rope:\n  method: yran\n  factor: 2\n",
       ":21:11: unknown rope.method 'yran'")
recipe("bad_tokenizer", edit(GOOD, "sequence_length: 256\n", "sequence_length: 256\n  tokenizer: gpt2\n"),
       ":13:14: data.tokenizer: expected 'bytes' or 'spm:PATH', got 'gpt2'")
recipe("duplicate_key", GOOD + "  seed: 1\n  seed: 2\n", ":21:3: duplicate key 'train.seed'")
recipe("duplicate_section", GOOD + "data:\n  heldout: x\n", ":20:1: duplicate key 'data'")
recipe("tp_not_dividing_heads", GOOD + "parallel:\n  tp: 3\n",
       ":21:7: parallel.tp (3) must divide model.num_attention_heads (4)")
recipe("sequence_not_multiple_of_2cp", GOOD + "parallel:\n  cp: 3\n",
       ":21:7: data.sequence_length (256) must be a multiple of 2 * parallel.cp (6)")
recipe("batch_not_divisible", edit(GOOD, "global_batch_tokens: 4096", "global_batch_tokens: 5000"),
       ":15:24: train.global_batch_tokens (5000) must be a multiple of train.micro_batch_size * "
       "data.sequence_length (4 * 256)")
recipe("both_batch_keys", GOOD + "  global_batch_size: 16\n",
       "exactly one of train.global_batch_tokens and train.global_batch_size is required")
recipe("negative_steps", edit(GOOD, "steps: 100", "steps: -5"), ":14:10: train.steps must be >= 1, got -5")
recipe("zero_sequence_length", edit(GOOD, "sequence_length: 256", "sequence_length: 0"),
       "data.sequence_length must be >= 1, got 0")
recipe("warmup_beyond_steps", edit(GOOD, "warmup_steps: 10", "warmup_steps: 200"),
       ":19:17: train.warmup_steps (200) must be <= train.steps (100)")
recipe("kv_heads_not_dividing", edit(GOOD, "num_key_value_heads: 2", "num_key_value_heads: 3"),
       ":6:24: model: num_attention_heads (4) must be a multiple of num_key_value_heads (3)")
recipe("yarn_without_factor", GOOD + "rope:\n  method: yarn\n",
       ":21:11: rope.factor is required for rope.method=yarn")
recipe("missing_hidden_size", drop(GOOD, "  hidden_size: 64"), "model.hidden_size is required")
recipe("missing_datasets", edit(GOOD, "  datasets:\n    - {path: data/a, weight: 2}\n    - {path: data/b}\n", ""),
       "data.datasets is required")
recipe("missing_lr", drop(drop(GOOD, "  lr: 1.0e-3"), "  min_lr: 1.0e-4"), "train.lr is required")
recipe("missing_dataset_path", edit(GOOD, "{path: data/b}", "{weight: 1}"), "data.datasets[1].path is required")
recipe("top_level_list", "- model\n- data\n", ":1:1: a recipe is a mapping of sections")
recipe("yaml_syntax_unclosed_flow", edit(GOOD, "{path: data/b}", "{path: data/b"), ":12:18: YAML syntax error: end of map flow not found")
recipe("yaml_syntax_bad_indent", edit(GOOD, "  steps: 100\n", "  steps: 100\n    lr: 2\n"), ":15:7: YAML syntax error: illegal map value")
write("recipes/base_cycle_b.yaml", "base: base_cycle_a.yaml\n")
recipe("base_cycle_a", "base: base_cycle_b.yaml\n", ":1:7: base: ", "base_cycle_b.yaml:1:7: base: inheritance cycle")
recipe("base_missing_file", "base: no_such_base.yaml\n" + GOOD,
       ":1:7: base: cannot read recipe '", "no_such_base.yaml': No such file or directory")

# ------------------------------------------------------------- safetensors


def st_bytes(header, data=b"", length=None, pad=True):
    """A safetensors file: header (dict, or str/bytes used as is) and data."""
    if isinstance(header, dict):
        h = json.dumps(header, separators=(",", ":")).encode()
    elif isinstance(header, str):
        h = header.encode()
    else:
        h = header
    if pad:
        h += b" " * ((-len(h)) % 8)
    n = len(h) if length is None else length
    return struct.pack("<Q", n) + h + data


def st(name, data, *expected):
    write("safetensors/" + name + ".safetensors", data)
    case("safetensors", "safetensors/" + name + ".safetensors", *expected)


def t(dtype, shape, b, e):
    return {"dtype": dtype, "shape": shape, "data_offsets": [b, e]}


F32x4 = bytes(16)
st("empty_file", b"", "file is 0 bytes, shorter than the 8-byte header length")
st("shorter_than_length", b"\x10\x00\x00", "file is 3 bytes, shorter than the 8-byte header length")
st("header_length_beyond_file", st_bytes({"w": t("F32", [4], 0, 16)}, F32x4, length=4096),
   "header length 4096 exceeds the file", "truncated or not a safetensors file")
st("header_length_huge", struct.pack("<Q", 2**63 + 5) + b"{}      ",
   "header length 9223372036854775813 exceeds the file")
st("header_not_json", st_bytes('{"w": {"dtype": "F32", "shape": [4], '), "header is not valid JSON: parse error at line 1")
st("header_is_array", st_bytes("[1, 2, 3]"), "header must be a JSON object, got array")
st("header_is_string", st_bytes('"weights"'), "header must be a JSON object, got string")
st("header_empty", st_bytes(b"", pad=False), "header is not valid JSON: parse error at line 1, column 1")
st("pickle_file", b"\x80\x02}q\x00(X\x01\x00\x00\x00wq\x01" + bytes(32),
   "exceeds the file", "not a safetensors file")
st("dtype_unknown", st_bytes({"w": t("F8_E9M9", [4], 0, 4)}, bytes(4)), "tensor 'w': unknown dtype 'F8_E9M9'")
st("dtype_not_string", st_bytes({"w": {"dtype": 4, "shape": [4], "data_offsets": [0, 16]}}, F32x4),
   "tensor 'w': dtype must be a string")
st("tensor_missing_offsets", st_bytes({"w": {"dtype": "F32", "shape": [4]}}, F32x4),
   "tensor 'w': needs dtype, shape and data_offsets")
st("tensor_not_object", st_bytes({"w": [0, 16]}, F32x4), "tensor 'w': needs dtype, shape and data_offsets")
st("shape_not_list", st_bytes({"w": t("F32", 4, 0, 16)}, F32x4), "tensor 'w': shape must be a list")
st("shape_negative", st_bytes({"w": t("F32", [-1, 4], 0, 16)}, F32x4),
   "tensor 'w': shape entries must be integers >= 0")
st("shape_fractional", st_bytes({"w": t("F32", [2.5], 0, 16)}, F32x4),
   "tensor 'w': shape entries must be integers >= 0")
st("shape_beyond_int64", st_bytes('{"w":{"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,16]}}', F32x4),
   "tensor 'w': shape entries must be integers >= 0")
st("offsets_negative", st_bytes({"w": t("F32", [4], -16, 0)}, F32x4),
   "tensor 'w': data_offsets must be [begin, end] with integers >= 0")
st("offsets_three_numbers", st_bytes({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8, 16]}}, F32x4),
   "tensor 'w': data_offsets must be [begin, end] with integers >= 0")
st("offsets_huge_float", st_bytes('{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,1e30]}}', F32x4),
   "tensor 'w': data_offsets must be [begin, end] with integers >= 0")
st("offsets_reversed", st_bytes({"w": t("F32", [4], 16, 0)}, F32x4),
   "tensor 'w': data_offsets [16, 0) hold 0 bytes, shape and F32 need 16")
st("shape_offsets_mismatch", st_bytes({"w": t("F32", [2, 2], 0, 8)}, bytes(8)),
   "tensor 'w': data_offsets [0, 8) hold 8 bytes, shape and F32 need 16")
st("bf16_size_mismatch", st_bytes({"w": t("BF16", [4], 0, 16)}, F32x4),
   "tensor 'w': data_offsets [0, 16) hold 16 bytes, shape and BF16 need 8")
st("offsets_past_end", st_bytes({"w": t("F32", [4], 0, 16)}, bytes(8)),
   "tensor 'w': data_offsets end 16 is past the data (8 bytes): the file is truncated")
st("truncated_data", st_bytes({"a": t("F32", [4], 0, 16), "b": t("F32", [8], 16, 48)}, bytes(40)),
   "tensor 'b': data_offsets end 48 is past the data (40 bytes): the file is truncated")
st("offsets_overlap", st_bytes({"a": t("F32", [4], 0, 16), "b": t("F32", [4], 8, 24)}, bytes(24)),
   "tensor 'b' starts at 8 but the previous one ends at 16: overlapping offsets")
st("offsets_gap", st_bytes({"a": t("F32", [2], 0, 8), "b": t("F32", [2], 16, 24)}, bytes(24)),
   "tensor 'b' starts at 16 but the previous one ends at 8: gap in the data")
st("trailing_bytes", st_bytes({"w": t("F32", [4], 0, 16)}, bytes(24)),
   "tensors cover 16 bytes but the data is 24 bytes: trailing bytes after the last tensor")
st("metadata_not_object", st_bytes({"__metadata__": ["format", "pt"], "w": t("F32", [4], 0, 16)}, F32x4),
   "__metadata__ must be an object of strings")
st("metadata_value_not_string", st_bytes({"__metadata__": {"step": 5}, "w": t("F32", [4], 0, 16)}, F32x4),
   "__metadata__.step must be a string")
# Duplicate names (a JSON parser would keep only the last "w"): caught while parsing.
st("duplicate_names",
   st_bytes('{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
            '"w":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}', bytes(16)),
   "duplicate tensor name 'w' in the header")
# numel * element size would wrap around 2^64 to 0 (an empty range).
st("shape_product_overflow",
   st_bytes('{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}}'),
   "tensor 'w': shape [4294967296, 4294967296] of F32 has more bytes than fit in 64 bits")
st("shape_bytes_overflow",
   st_bytes('{"w":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,0]}}'),
   "tensor 'w': shape [4611686018427387904] of F32 has more bytes than fit in 64 bits")

# --------------------------------------------------------------- hf_config

GOOD_HF = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": 260,
    "hidden_size": 64,
    "intermediate_size": 176,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "tie_word_embeddings": False,
    "hidden_act": "silu",
}


def hf(name, obj, *expected, text=None):
    if text is None:
        text = json.dumps(obj, indent=2) + "\n"
    write("hf_config/" + name + ".json", text)
    case("hf_config", "hf_config/" + name + ".json", *expected)


def hf_with(**changes):
    c = dict(GOOD_HF)
    for k, v in changes.items():
        if v is REMOVE:
            c.pop(k, None)
        else:
            c[k] = v
    return c


REMOVE = object()

hf("not_json", None, "config.json: not valid JSON: parse error at line", text='{\n  "model_type": "llama",\n  "hidden_size": 64,\n}\n')
hf("truncated_json", None, "config.json: not valid JSON: parse error at line", text='{\n  "model_type": "llama",\n  "hidden_size": 6')
hf("empty_file", None, "config.json: not valid JSON: parse error at line 1, column 1", text="")
hf("top_level_array", [GOOD_HF], "config.json: must be a JSON object, got array")
hf("empty_object", {}, "model_type is missing")
hf("model_type_mistral", hf_with(model_type="mistral", architectures=REMOVE), 'model_type must be "llama", got "mistral"')
hf("architectures_wrong", hf_with(architectures=["MistralForCausalLM"]),
   'architectures must be ["LlamaForCausalLM"]')
hf("hidden_size_string", hf_with(hidden_size="64"), 'hidden_size must be an integer, got "64"')
hf("hidden_size_fractional", hf_with(hidden_size=64.5), "hidden_size must be an integer, got 64.5")
hf("missing_hidden_size", hf_with(hidden_size=REMOVE, num_attention_heads=3, num_key_value_heads=3),
   "hidden_size (4096) is not a multiple of num_attention_heads (3)",
   "hidden_size is not in the file, so it is HF's default 4096")
hf("heads_not_dividing_hidden", hf_with(num_attention_heads=3, num_key_value_heads=3),
   "head_dim is absent and hidden_size (64) is not a multiple of num_attention_heads (3)")
hf("kv_heads_not_dividing", hf_with(num_key_value_heads=3),
   "num_attention_heads (4) must be a multiple of num_key_value_heads (3)")
hf("heads_zero", hf_with(num_attention_heads=0), "num_attention_heads must be > 0, got 0")
hf("head_dim_odd", hf_with(head_dim=15), "head_dim must be a positive even integer, got 15")
hf("layers_negative", hf_with(num_hidden_layers=-2), "num_hidden_layers must be > 0, got -2")
hf("vocab_zero", hf_with(vocab_size=0), "vocab_size must be > 0, got 0")
hf("rope_theta_string", hf_with(rope_theta="1e6"), 'rope_theta must be a number, got "1e6"')
hf("tie_embeddings_string", hf_with(tie_word_embeddings="false"),
   'tie_word_embeddings must be true or false, got "false"')
hf("hidden_act_gelu", hf_with(hidden_act="gelu"), 'hidden_act must be "silu" (SwiGLU), got "gelu"')
hf("attention_bias", hf_with(attention_bias=True), "attention_bias must be false")
hf("partial_rotary", hf_with(partial_rotary_factor=0.5), "partial_rotary_factor must be 1")
hf("rope_scaling_unknown_type", hf_with(rope_scaling={"rope_type": "su", "factor": 2.0}),
   "rope_scaling.rope_type 'su' is not supported", "accepted: default, linear")
hf("rope_scaling_legacy_type_unknown", hf_with(rope_scaling={"type": "ntk-by-parts", "factor": 2.0}),
   "rope_scaling.rope_type 'ntk-by-parts' is not supported")
hf("rope_scaling_missing_factor", hf_with(rope_scaling={"rope_type": "linear"}),
   "rope_scaling.factor is required for rope_type linear")
hf("rope_scaling_missing_type", hf_with(rope_scaling={"factor": 4.0}), "rope_scaling.rope_type is missing")
hf("rope_scaling_not_object", hf_with(rope_scaling="linear"), 'rope_scaling must be an object or null, got "linear"')
hf("rope_scaling_factor_string", hf_with(rope_scaling={"rope_type": "yarn", "factor": "4"}),
   'rope_scaling.factor must be a number, got "4"')
hf("llama3_missing_low_freq_factor",
   hf_with(rope_scaling={"rope_type": "llama3", "factor": 8.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 128}),
   "rope_scaling.low_freq_factor is required for rope_type llama3")
hf("longrope_factor_not_list",
   hf_with(rope_scaling={"rope_type": "longrope", "short_factor": 1.0, "long_factor": [1.0] * 8, "factor": 2.0}),
   "rope_scaling.short_factor must be a list of numbers, got 1.0")
hf("rope_theta_negative", hf_with(rope_theta=-1.0), "rope_theta: rope.theta must be a finite number > 0, got -1")
hf("linear_factor_zero", hf_with(rope_scaling={"rope_type": "linear", "factor": 0.0}),
   "rope_scaling: rope.factor must be >= 1, got 0")
hf("logit_scale_unknown_kind", hf_with(rotor_logit_scale={"kind": "cubic"}),
   "rotor_logit_scale: unknown logit_scale.kind 'cubic'")
hf("rope_theta_conflict", hf_with(rope_parameters={"rope_type": "default", "rope_theta": 500000.0}),
   "rope_theta (10000) differs from rope_parameters.rope_theta (500000)")
hf("rope_scaling_vs_parameters",
   hf_with(rope_scaling={"rope_type": "linear", "factor": 2.0},
           rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
   "rope_scaling (linear) and rope_parameters (none) describe different RoPE")

# ---------------------------------------------------------------- indexed

MAGIC = b"MMIDIDX\x00\x00"


def idx_bytes(lengths, pointers, doc_idx, dtype=8, version=1, magic=MAGIC, n=None, d=None, extra=b""):
    n = len(lengths) if n is None else n
    d = len(doc_idx) if d is None else d
    out = magic + struct.pack("<Q", version) + struct.pack("<B", dtype) + struct.pack("<QQ", n, d)
    out += b"".join(struct.pack("<i", x) for x in lengths)
    out += b"".join(struct.pack("<q", x) for x in pointers)
    out += b"".join(struct.pack("<q", x) for x in doc_idx)
    return out + extra


def tokens_u16(count):
    return b"".join(struct.pack("<H", (7 * k + 3) % 260) for k in range(count))


def indexed(name, idx, bin_, *expected):
    write("indexed/" + name + ".idx", idx)
    if bin_ is not None:
        write("indexed/" + name + ".bin", bin_)
    case("indexed", "indexed/" + name, *expected)


# Good layout: 3 sequences of 4, 2, 3 uint16 tokens, two documents [0, 2), [2, 3).
L, P, D = [4, 2, 3], [0, 8, 12], [0, 2, 3]
BIN = tokens_u16(9)
indexed("bad_magic", idx_bytes(L, P, D, magic=b"TNTIDX\x00\x00\x00"), BIN,
        ".idx: bad magic: not a Megatron MMIDIDX index")
indexed("bin_given_as_idx", BIN + bytes(40), BIN, ".idx: bad magic")
indexed("wrong_version", idx_bytes(L, P, D, version=2), BIN, ".idx: unsupported version 2 (expected 1)")
indexed("unknown_dtype_code", idx_bytes(L, P, D, dtype=9), BIN, ".idx: unknown dtype code 9 (expected 1..8)")
indexed("dtype_code_zero", idx_bytes(L, P, D, dtype=0), BIN, ".idx: unknown dtype code 0")
indexed("empty", b"", b"", ".idx: truncated index: 0 bytes, shorter than the 34-byte header")
indexed("truncated_header", idx_bytes(L, P, D)[:20], BIN, ".idx: truncated index: 20 bytes, shorter than the 34-byte header")
indexed("truncated_arrays", idx_bytes(L, P, D)[:60], BIN,
        ".idx: truncated index: 60 bytes cannot hold 3 sequences and 3 document indices")
indexed("count_huge", idx_bytes(L, P, D, n=2**62), BIN, ".idx: truncated index", "cannot hold 4611686018427387904 sequences")
indexed("size_mismatch", idx_bytes(L, P, D, extra=b"\x01\x02"), BIN,
        ".idx: index size 96 does not match 3 sequences and 3 document indices (expected 94 bytes, or 97 with sequence modes)")
indexed("doc_index_empty", idx_bytes([], [], []), b"", ".idx: document index is empty (must start with 0)")
indexed("pointer_past_end", idx_bytes(L, [0, 8, 64], D), BIN,
        ".bin: sequence 2 (byte pointer 64, 3 tokens of uint16) runs past the end of the .bin (18 bytes)")
indexed("length_past_end", idx_bytes([4, 2, 30], P, D), BIN,
        ".bin: sequence 2 (byte pointer 12, 30 tokens of uint16) runs past the end of the .bin (18 bytes)",
        "truncated .bin or corrupt index")
indexed("truncated_bin", idx_bytes(L, P, D), BIN[:15], ".bin: sequence 2", "runs past the end of the .bin (15 bytes)")
indexed("empty_bin", idx_bytes(L, P, D), b"", ".bin: sequence 0", "runs past the end of the .bin (0 bytes)")
indexed("negative_length", idx_bytes([4, -2, 3], P, D), BIN, ".idx: sequence 1 has negative length -2")
indexed("negative_pointer", idx_bytes(L, [0, -8, 12], D), BIN,
        ".idx: sequence 1 has bad byte pointer -8 (must be a non-negative multiple of 2)")
indexed("misaligned_pointer", idx_bytes(L, [0, 7, 12], D), BIN,
        ".idx: sequence 1 has bad byte pointer 7 (must be a non-negative multiple of 2)")
indexed("doc_index_not_from_zero", idx_bytes(L, P, [1, 2, 3]), BIN, ".idx: document index starts at 1, not 0")
indexed("doc_index_not_monotonic", idx_bytes(L, P, [0, 2, 1, 3]), BIN,
        ".idx: document index not monotonic: entry 2 = 1 < entry 1 = 2")
indexed("doc_index_short", idx_bytes(L, P, [0, 2]), BIN,
        ".idx: document index ends at 2, not at the sequence count 3")
indexed("doc_index_past_count", idx_bytes(L, P, [0, 2, 5]), BIN,
        ".idx: document index ends at 5, not at the sequence count 3")
indexed("missing_bin", idx_bytes(L, P, D), None, "missing_bin.bin: cannot open: No such file or directory")

# ------------------------------------------------------------------- llmc


def llmc_bytes(magic, version, count, tokens, width=2):
    header = struct.pack("<3i", magic, version, count) + bytes(4 * 253)
    fmt = "<H" if width == 2 else "<I"
    return header + b"".join(struct.pack(fmt, x) for x in tokens)


def llmc(name, data, *expected):
    write("llmc/" + name + ".bin", data)
    case("llmc", "llmc/" + name + ".bin", *expected)


TOK = [50256, 1, 2, 3, 4, 5, 6, 7]
llmc("empty", b"", "truncated llm.c shard: 0 bytes, shorter than the 1024-byte header")
llmc("truncated_header", llmc_bytes(20240520, 1, 8, TOK)[:100],
     "truncated llm.c shard: 100 bytes, shorter than the 1024-byte header")
llmc("bad_magic", llmc_bytes(12345, 1, 8, TOK), "bad magic 12345: not an llm.c token shard (expected 20240520 or 20240801)")
llmc("megatron_bin_given", tokens_u16(600), "bad magic", "not an llm.c token shard")
llmc("wrong_version_uint16", llmc_bytes(20240520, 7, 8, TOK), "unsupported version 7 for magic 20240520 (expected 1)")
llmc("wrong_version_uint32", llmc_bytes(20240801, 1, 8, TOK, width=4),
     "unsupported version 1 for magic 20240801 (expected 7)")
llmc("count_past_end", llmc_bytes(20240520, 1, 100, TOK),
     "truncated llm.c shard: 1040 bytes, but the header's 100 tokens need 1224")
llmc("count_past_end_uint32", llmc_bytes(20240801, 7, 9, TOK, width=4),
     "truncated llm.c shard: 1056 bytes, but the header's 9 tokens need 1060")
llmc("count_short", llmc_bytes(20240520, 1, 2, TOK), "oversized llm.c shard: 1040 bytes, but the header's 2 tokens need 1028")
llmc("odd_trailing_byte", llmc_bytes(20240520, 1, 8, TOK) + b"\x00",
     "oversized llm.c shard: 1041 bytes, but the header's 8 tokens need 1040")
llmc("count_negative", llmc_bytes(20240520, 1, -8, TOK), "negative token count -8")

# ------------------------------------------------------------- tokenizers
# SentencePiece ModelProto, protobuf wire format written by hand:
#   ModelProto.pieces = 1 (repeated SentencePiece {piece = 1, score = 2, type = 3})
#   SentencePiece.Type: NORMAL 1, UNKNOWN 2, CONTROL 3


def varint(v):
    out = b""
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field_bytes(num, payload):
    return varint((num << 3) | 2) + varint(len(payload)) + payload


def piece(text, score, type_):
    return field_bytes(1, text.encode()) + varint((2 << 3) | 5) + struct.pack("<f", score) + varint(3 << 3) + varint(type_)


def model_proto(pieces):
    return b"".join(field_bytes(1, piece(*p)) for p in pieces)


GOOD_PIECES = [("<unk>", 0.0, 2), ("<s>", 0.0, 3), ("</s>", 0.0, 3), ("\u2581a", -1.0, 1), ("b", -2.0, 1)]


def tok(name, data, *expected):
    write("tokenizers/" + name + ".model", data)
    case("tokenizer", "tokenizers/" + name + ".model", *expected)


tok("empty", b"", "cannot load SentencePiece model '", "empty file, not a SentencePiece model")
tok("text_file", "This is a README, not a SentencePiece model.\n", "cannot load SentencePiece model '",
    "not a SentencePiece model (45 bytes that do not parse as a ModelProto protobuf; truncated or another format)")
tok("tokenizer_json", json.dumps({"version": "1.0", "model": {"type": "BPE", "vocab": {"a": 0}}}) + "\n",
    "not a SentencePiece model", "the file looks like JSON, e.g. a Hugging Face tokenizer.json")
tok("truncated", model_proto(GOOD_PIECES)[:-7], "not a SentencePiece model (65 bytes")
tok("random_bytes", bytes((i * 73 + 41) % 256 for i in range(512)), "not a SentencePiece model (512 bytes")
tok("gzip_compressed", b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + bytes(range(64)), "not a SentencePiece model (74 bytes")
tok("empty_piece", model_proto(GOOD_PIECES + [("", -3.0, 1)]), "': piece must not be empty")
tok("no_unknown_piece", model_proto(GOOD_PIECES[1:]), "': unk is not defined")
tok("duplicate_piece", model_proto(GOOD_PIECES + [("b", -3.0, 1)]), "': b is already defined")

# --------------------------------------------------------------- manifest

with open(os.path.join(HERE, "cases.tsv"), "w", encoding="utf-8", newline="\n") as f:
    f.write("# Bad inputs and the error each must give: kind<TAB>file<TAB>substrings joined by ' && '.\n")
    f.write("# Generated by make_cases.py; checked by tests/trainer/cli/bad_inputs_test.cc.\n")
    for kind, rel, expected in ROWS:
        if kind == "#":
            f.write("# " + rel + "\n")
            continue
        for e in expected:
            assert "\t" not in e and " && " not in e and "\n" not in e, e
        f.write(kind + "\t" + rel + "\t" + " && ".join(expected) + "\n")

counts = {}
for kind, _, _ in ROWS:
    if kind != "#":
        counts[kind] = counts.get(kind, 0) + 1
print(" ".join(f"{k}={v}" for k, v in counts.items()), "total", sum(counts.values()))
