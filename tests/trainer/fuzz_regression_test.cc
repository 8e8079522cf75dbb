// Fuzz regressions, in-process: every file of tests/fuzz/corpus/<target>/ and
// tests/fuzz/crashes/<target>/ goes through the same shipped entry points as
// the libFuzzer targets (tests/fuzz/targets.h), which abort on a broken
// invariant; plus direct checks of the crashes fixed (error texts name the file).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "tests/fuzz/targets.h"

namespace rotor {
namespace {

namespace fs = std::filesystem;

// The repository root: $ROTOR_SOURCE_DIR, or three levels above this file
// (CMake compiles it by absolute path).
fs::path source_dir() {
  if (const char* env = std::getenv("ROTOR_SOURCE_DIR"); env != nullptr && *env != '\0')
    return env;
  return fs::path(__FILE__).parent_path().parent_path().parent_path();
}

std::vector<fs::path> inputs(const std::string& target) {
  std::vector<fs::path> files;
  for (const char* kind : {"corpus", "crashes"}) {
    const fs::path dir = source_dir() / "tests" / "fuzz" / kind / target;
    if (!fs::is_directory(dir)) continue;
    for (const auto& entry : fs::directory_iterator(dir))
      if (entry.is_regular_file()) files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::string slurp(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

const uint8_t* bytes(const std::string& s) { return reinterpret_cast<const uint8_t*>(s.data()); }

TEST(FuzzRegression, SeedCorporaAreThere) {
  ASSERT_TRUE(fs::is_directory(source_dir() / "tests" / "fuzz" / "corpus"))
      << "set ROTOR_SOURCE_DIR to the repository root";
  for (const char* t : {"safetensors", "indexed_dataset", "recipe"})
    EXPECT_FALSE(inputs(t).empty()) << t;
}

TEST(FuzzRegression, Safetensors) {
  fuzz::TempDir dir("regression-safetensors");
  for (const fs::path& p : inputs("safetensors")) {
    SCOPED_TRACE(p.string());
    const std::string data = slurp(p);
    fuzz::safetensors_one_input(dir.path(), bytes(data), data.size());
  }
}

TEST(FuzzRegression, IndexedDataset) {
  fuzz::TempDir dir("regression-indexed");
  for (const fs::path& p : inputs("indexed_dataset")) {
    SCOPED_TRACE(p.string());
    const std::string data = slurp(p);
    fuzz::indexed_dataset_one_input(dir.path(), bytes(data), data.size());
  }
}

TEST(FuzzRegression, Recipe) {
  fuzz::TempDir dir("regression-recipe");
  fuzz::recipe_setup(dir.path());
  for (const fs::path& p : inputs("recipe")) {
    SCOPED_TRACE(p.string());
    const std::string data = slurp(p);
    fuzz::recipe_one_input(dir.path(), bytes(data), data.size());
  }
}

void write_text(const std::string& path, const std::string& text) {
  fuzz::write_bytes(path, bytes(text), text.size());
}

std::string safetensors_with(const std::string& json, size_t data_bytes) {
  std::string header = json;
  while ((8 + header.size()) % 8 != 0) header += ' ';
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + std::string(data_bytes, '\x01');
}

// crashes/safetensors/five_dims_read_into_abort: read_into built a Shape of the
// file's dims, which aborts beyond kMaxDims (4).
TEST(FuzzRegression, SafetensorsMoreDimsThanShapeHolds) {
  fuzz::TempDir dir("regression-dims");
  const std::string path = dir.path() + "/five.safetensors";
  write_text(path, safetensors_with(
                       R"({"t":{"dtype":"F32","shape":[1,1,1,2,1],"data_offsets":[0,8]}})", 8));
  absl::StatusOr<SafetensorsFile> f = SafetensorsFile::open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  Tensor flat = Tensor::zeros(Shape({2}), DType::kF32);
  EXPECT_TRUE(f->read_into("t", flat, /*allow_reshape=*/true).ok());
  const absl::Status s = f->read_into("t", flat, /*allow_reshape=*/false);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find(path), std::string::npos) << s;
  EXPECT_NE(s.message().find("[1, 1, 1, 2, 1]"), std::string::npos) << s;
}

// A shape whose element count overflows 64 bits wrapped to 0 and was accepted
// with empty data_offsets.
TEST(FuzzRegression, SafetensorsShapeOverflow) {
  fuzz::TempDir dir("regression-overflow");
  const std::string path = dir.path() + "/big.safetensors";
  write_text(path, safetensors_with(
                       R"({"t":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}})",
                       0));
  absl::StatusOr<SafetensorsFile> f = SafetensorsFile::open(path);
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find(path), std::string::npos) << f.status();
  EXPECT_NE(f.status().message().find("64 bits"), std::string::npos) << f.status();
}

// crashes/recipe/sweep_grid_10000_runs_timeout: expand_sweep validated all
// 10^4 runs of a 4-axis grid (minutes under ASan); now refused up front.
TEST(FuzzRegression, RecipeSweepGridTooLarge) {
  fuzz::TempDir dir("regression-sweep");
  fuzz::recipe_setup(dir.path());
  const std::string path = dir.path() + "/grid.yaml";
  std::string axes;
  for (const char* key : {"train.seed", "train.steps", "train.lr", "eval.tokens"})
    axes += std::string(axes.empty() ? "" : ", ") + key + ": [1,2,3,4,5,6,7,8,9,10]";
  write_text(path, "base: base.yaml\nsweep: {" + axes + "}\n");
  absl::StatusOr<LoadedRecipe> r = load_recipe(path, {});
  ASSERT_TRUE(r.ok()) << r.status();
  absl::StatusOr<std::vector<NamedRun>> runs = expand_sweep(*r);
  ASSERT_FALSE(runs.ok());
  EXPECT_NE(runs.status().message().find(path + ":2:"), std::string::npos) << runs.status();
  EXPECT_NE(runs.status().message().find("more than 1000 runs"), std::string::npos) << runs.status();
}

// crashes/recipe/invalid_utf8_run_dir_round_trip: a string with bytes that are
// not UTF-8 came back from recipe_to_yaml with U+FFFD in their place (another
// run.dir); now an error naming the file and the key. UTF-8 text round-trips.
TEST(FuzzRegression, RecipeStringsMustBeUtf8) {
  fuzz::TempDir dir("regression-utf8");
  fuzz::recipe_setup(dir.path());
  const std::string bad = dir.path() + "/bad.yaml";
  write_text(bad, "base: base.yaml\nrun: {dir: \"runs/a\xff\xfe\"}\n");
  absl::StatusOr<LoadedRecipe> r = load_recipe(bad, {});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find(bad + ":2:"), std::string::npos) << r.status();
  EXPECT_NE(r.status().message().find("run.dir: not valid UTF-8"), std::string::npos) << r.status();
  for (const char* text : {"runs/\xc0\xaf", "runs/\xed\xa0\x80", "runs/\xef\xbf\xbe", "runs/\xe2\x82"}) {
    write_text(bad, std::string("base: base.yaml\nrun: {dir: \"") + text + "\"}\n");
    EXPECT_FALSE(load_recipe(bad, {}).ok()) << text;
  }
  const std::string good = dir.path() + "/good.yaml";
  write_text(good, "base: base.yaml\nrun: {dir: \"runs/\xc3\xbc-\xe2\x82\xac-\xf0\x9f\x99\x82\"}\n");
  absl::StatusOr<LoadedRecipe> g = load_recipe(good, {});
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->proto.run().dir(), "runs/\xc3\xbc-\xe2\x82\xac-\xf0\x9f\x99\x82");
  const std::string again = dir.path() + "/again.yaml";
  write_text(again, recipe_to_yaml(g->proto));
  absl::StatusOr<LoadedRecipe> g2 = load_recipe(again, {});
  ASSERT_TRUE(g2.ok()) << g2.status();
  EXPECT_EQ(g2->proto.run().dir(), g->proto.run().dir());
}

}  // namespace
}  // namespace rotor
