// The bodies of the fuzz targets in tests/fuzz/*_fuzz.cc, shared with the
// in-process regression test tests/trainer/fuzz_regression_test.cc: each takes
// one input (bytes), writes it where the shipped reader expects a file, and
// drives the shipped entry points over everything the input describes.
//
// Any error status is fine. A crash, a sanitizer report, a hang or an uncaught
// exception is a bug; so is a reader accepting a file that breaks its own
// documented invariants (checked here with fuzz_require, which aborts).
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "data/indexed_dataset.h"
#include "kernels/tensor.h"
#include "trainer/recipe/recipe.h"
#include "trainer/safetensors.h"

namespace rotor::fuzz {

// Aborts (so libFuzzer records the input) when a documented invariant fails.
inline void fuzz_require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz invariant broken: %s\n", what);
    std::abort();
  }
}

// A per-process temporary directory, made once, removed at exit.
class TempDir {
 public:
  explicit TempDir(const std::string& tag) {
    const char* tmp = std::getenv("TMPDIR");
    std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/rotor-fuzz-" + tag + "-XXXXXX";
    std::vector<char> buf(templ.begin(), templ.end());
    buf.push_back('\0');
    fuzz_require(::mkdtemp(buf.data()) != nullptr, "mkdtemp failed");
    path_ = buf.data();
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline void write_bytes(const std::string& path, const uint8_t* data, size_t size) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  fuzz_require(f != nullptr, "cannot create the input file");
  fuzz_require(size == 0 || std::fwrite(data, 1, size, f) == size, "short write");
  fuzz_require(std::fclose(f) == 0, "fclose failed");
}

// ------------------------------------------------------------- safetensors

// Opens `path` with SafetensorsFile::open and reads every tensor it lists.
inline void exercise_safetensors(const std::string& path, uint64_t file_size) {
  absl::StatusOr<SafetensorsFile> f = SafetensorsFile::open(path);
  if (!f.ok()) return;
  size_t meta = 0;
  for (const auto& [k, v] : f->metadata()) meta += k.size() + v.size();
  fuzz_require(meta <= file_size, "metadata larger than the file");
  for (const SafetensorsEntry& e : f->entries()) {
    fuzz_require(f->find(e.name) != nullptr, "find() misses a listed tensor");
    // The layout rules of safetensors.h: end - begin == numel * element size,
    // within the file. Computed without overflow.
    uint64_t numel = 1;
    bool overflow = false;
    for (int64_t d : e.shape) {
      fuzz_require(d >= 0, "negative dim accepted");
      overflow = overflow || __builtin_mul_overflow(numel, static_cast<uint64_t>(d), &numel);
    }
    fuzz_require(!overflow, "shape whose element count overflows accepted");
    fuzz_require(e.begin <= e.end && e.end <= file_size, "data_offsets outside the file accepted");
    fuzz_require(numel <= e.end - e.begin, "shape larger than its data_offsets accepted");
    DType dt = DType::kF32;
    if (e.dtype == "I32") dt = DType::kI32;
    if (e.dtype == "I64") dt = DType::kI64;
    if (e.dtype == "F64") dt = DType::kF64;
    const int64_t n = static_cast<int64_t>(numel);
    const bool fits = static_cast<int>(e.shape.size()) <= kMaxDims;
    Tensor dst = Tensor::zeros(fits ? Shape(e.shape) : Shape({n}), dt);
    (void)f->read_into(e.name, dst, /*allow_reshape=*/!fits);
    // Flat, with reshape allowed; and a wrong element count (must be an error).
    Tensor flat = Tensor::zeros(Shape({n}), e.dtype == "BF16" ? DType::kBF16 : dt);
    (void)f->read_into(e.name, flat, /*allow_reshape=*/true);
    Tensor wrong = Tensor::zeros(Shape({n + 1}), dt);
    fuzz_require(!f->read_into(e.name, wrong, true).ok(), "read_into ignored the element count");
  }
  fuzz_require(!f->read_into("\x01no such tensor", Tensor::zeros(Shape({1}), DType::kF32)).ok(),
               "read_into of a missing tensor succeeded");
}

inline void safetensors_one_input(const std::string& dir, const uint8_t* data, size_t size) {
  const std::string path = dir + "/input.safetensors";
  write_bytes(path, data, size);
  exercise_safetensors(path, size);
}

// ---------------------------------------------------------- indexed dataset

// Input format: [u32 little-endian L][L bytes of .idx][the rest: .bin]
// (L is clamped to what follows; fewer than 4 bytes: an empty .idx and .bin).
inline void exercise_indexed_dataset(const std::string& prefix) {
  absl::StatusOr<IndexedDataset> ds = IndexedDataset::open(prefix);
  if (!ds.ok()) return;
  const int64_t n = ds->num_sequences();
  fuzz_require(ds->num_documents() >= 0, "negative document count");
  int64_t tokens = 0;
  std::vector<int32_t> buf;
  for (int64_t doc = 0; doc < ds->num_documents(); ++doc) {
    const auto [first, last] = ds->document_range(doc);
    fuzz_require(0 <= first && first <= last && last <= n, "document range outside [0, N]");
    for (int64_t i = first; i < last; ++i) {
      const int64_t len = ds->sequence_length(i);
      fuzz_require(len >= 0, "negative sequence length");
      buf.assign(static_cast<size_t>(len) + 1, 0);
      absl::Status s = ds->read(i, 0, len, buf.data());
      if (s.ok() && len > 0) {
        const SequenceView v = ds->sequence(i);
        int64_t sum = 0;
        for (int64_t k = 0; k < v.length; ++k) sum += v.at(k);
        (void)sum;
        (void)ds->read(i, len / 2, len - len / 2, buf.data());
      }
      fuzz_require(!ds->read(i, len, 1, buf.data()).ok(), "read past a sequence succeeded");
      fuzz_require(!ds->read(i, -1, 1, buf.data()).ok(), "read at offset -1 succeeded");
    }
  }
  for (int64_t i = 0; i < n; ++i) tokens += ds->sequence_length(i);
  fuzz_require(tokens == ds->num_tokens(), "num_tokens differs from the sum of the lengths");
  fuzz_require(!ds->read(n, 0, 0, buf.data()).ok(), "read of sequence N succeeded");
}

inline void indexed_dataset_one_input(const std::string& dir, const uint8_t* data, size_t size) {
  uint32_t idx_len = 0;
  if (size >= 4) {
    idx_len = static_cast<uint32_t>(data[0]) | static_cast<uint32_t>(data[1]) << 8 |
              static_cast<uint32_t>(data[2]) << 16 | static_cast<uint32_t>(data[3]) << 24;
    data += 4;
    size -= 4;
  } else {
    size = 0;
  }
  const size_t idx_bytes = std::min<size_t>(idx_len, size);
  const std::string prefix = dir + "/input";
  write_bytes(prefix + ".idx", data, idx_bytes);
  write_bytes(prefix + ".bin", data + idx_bytes, size - idx_bytes);
  exercise_indexed_dataset(prefix);
}

// ------------------------------------------------------------------ recipe

// `base:` is followed only to a plain file name (no '/'), i.e. inside the
// temporary directory, which holds just the input, base.yaml (a valid recipe
// written by recipe_setup) and the directory roundtrip/: never to a file outside it.
inline bool recipe_base_is_local(const std::string& text) {
  try {
    const YAML::Node root = YAML::Load(text);
    if (!root.IsMap()) return true;
    const YAML::Node base = root["base"];
    if (!base) return true;
    if (!base.IsScalar()) return true;  // an error before any file is read
    return base.Scalar().find('/') == std::string::npos;
  } catch (const YAML::Exception&) {
    return true;  // load_recipe reports it
  }
}

inline void recipe_setup(const std::string& dir) {
  static const char kBase[] =
      "model: {vocab_size: 256, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1,\n"
      "        num_attention_heads: 2, num_key_value_heads: 1}\n"
      "rope: {theta: 10000}\n"
      "data: {datasets: [{path: d}], sequence_length: 8}\n"
      "train: {steps: 2, lr: 1.0e-3, global_batch_tokens: 16}\n";
  write_bytes(dir + "/base.yaml", reinterpret_cast<const uint8_t*>(kBase), sizeof(kBase) - 1);
  std::error_code ec;
  std::filesystem::create_directories(dir + "/roundtrip", ec);
  fuzz_require(!ec, "cannot create the roundtrip directory");
}

// Loads the recipe, expands its sweep, writes each run back as YAML and loads
// that again (recipe_to_yaml's contract: load_recipe of it gives the same proto).
inline void exercise_recipe(const std::string& path, const std::string& dir) {
  absl::StatusOr<LoadedRecipe> r = load_recipe(path, {});
  if (!r.ok()) return;
  (void)recipe_to_yaml(r->given);
  const std::string text = recipe_to_yaml(r->proto);
  absl::StatusOr<std::vector<NamedRun>> runs = expand_sweep(*r);
  if (runs.ok()) {
    // expand_sweep validated every run (up to 1000); re-check only a few.
    for (size_t i = 0; i < runs->size() && i < 16; ++i) {
      const NamedRun& run = (*runs)[i];
      (void)recipe_to_yaml(run.recipe.proto);
      (void)validate(run.recipe.proto);
    }
  }
  // In a subdirectory, out of reach of `base:` (whose value has no '/'), so
  // that each input behaves the same whatever ran before it.
  const std::string again = dir + "/roundtrip/again.yaml";
  write_bytes(again, reinterpret_cast<const uint8_t*>(text.data()), text.size());
  absl::StatusOr<LoadedRecipe> r2 = load_recipe(again, {});
  if (!r2.ok()) {
    std::fprintf(stderr, "recipe_to_yaml output does not load: %s\n--- yaml:\n%s\n",
                 std::string(r2.status().message()).c_str(), text.c_str());
    fuzz_require(false, "recipe_to_yaml output does not load again");
  }
  if (r2->proto.SerializeAsString() != r->proto.SerializeAsString()) {
    std::fprintf(stderr, "recipe_to_yaml round trip differs:\n--- first:\n%s--- again:\n%s",
                 r->proto.DebugString().c_str(), r2->proto.DebugString().c_str());
    fuzz_require(false, "load_recipe(recipe_to_yaml(proto)) differs from proto");
  }
}

inline void recipe_one_input(const std::string& dir, const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  if (!recipe_base_is_local(text)) return;
  const std::string path = dir + "/input.yaml";
  write_bytes(path, data, size);
  exercise_recipe(path, dir);
}

}  // namespace rotor::fuzz
