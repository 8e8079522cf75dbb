// The corpus of bad inputs (tests/bad_inputs/, written by make_cases.py and
// committed): every file listed in cases.tsv is run through the loader that
// rotor's commands use for its kind, and must be refused with an error that
// names the file and contains each expected substring. The input is left
// byte for byte as it was ("bad input loses nothing"), and rotor import-hf
// creates no checkpoint directory.
//
//   kind         loader
//   recipe       load_recipe                      (rotor train, sweep)
//   safetensors  SafetensorsFile::open            (rotor import-hf, checkpoints)
//   hf_config    run_import_hf_command            (the file as HF_DIR/config.json)
//   indexed      IndexedDataset::open(prefix)     (rotor train, eval)
//   llmc         LlmcShard::open
//   tokenizer    make_tokenizer("spm:PATH")       (rotor prep, score)
//
// One test per case: BadInput/BadInputTest.Refused/<kind>_<case>.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/common/testing.h"
#include "data/indexed_dataset.h"
#include "data/llmc_shard.h"
#include "data/tokenizer.h"
#include "trainer/cli/hf_command.h"
#include "trainer/recipe/recipe.h"
#include "trainer/safetensors.h"

namespace rotor {
namespace {

namespace fs = std::filesystem;

// tests/trainer/cli/ -> tests/bad_inputs/
fs::path corpus_dir() {
  return fs::path(__FILE__).parent_path().parent_path().parent_path() / "bad_inputs";
}

struct BadInput {
  std::string kind;
  std::string file;  // relative to corpus_dir(); for indexed the prefix
  std::vector<std::string> expected;
  int line = 0;  // in cases.tsv
};

// How gtest prints a case (in failure messages).
void PrintTo(const BadInput& c, std::ostream* os) {
  *os << "cases.tsv line " << c.line << ": " << c.kind << " " << c.file;
}

std::vector<std::string> split(const std::string& s, const std::string& sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    const size_t at = s.find(sep, start);
    out.push_back(s.substr(start, at == std::string::npos ? std::string::npos : at - start));
    if (at == std::string::npos) return out;
    start = at + sep.size();
  }
}

// The rows of cases.tsv; a malformed row becomes a case of kind "malformed".
std::vector<BadInput> load_cases() {
  std::vector<BadInput> cases;
  std::ifstream in(corpus_dir() / "cases.tsv");
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.empty() || line[0] == '#') continue;
    const std::vector<std::string> cols = split(line, "\t");
    BadInput c;
    c.line = number;
    if (cols.size() != 3 || cols[2].empty()) {
      c.kind = "malformed";
      c.file = line;
    } else {
      c.kind = cols[0];
      c.file = cols[1];
      c.expected = split(cols[2], " && ");
    }
    cases.push_back(c);
  }
  return cases;
}

std::string case_name(const BadInput& c) {
  std::string name = c.kind + "_" + fs::path(c.file).stem().string();
  if (c.kind == "malformed") name = "malformed_line_" + std::to_string(c.line);
  for (char& ch : name) {
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  }
  return name;
}

// The files a case reads (to check they are unchanged).
std::vector<fs::path> input_files(const BadInput& c) {
  const fs::path p = corpus_dir() / c.file;
  if (c.kind == "indexed") {
    std::vector<fs::path> out;
    for (const char* ext : {".idx", ".bin"}) {
      fs::path f = p;
      f += ext;
      if (fs::exists(f)) out.push_back(f);
    }
    return out;
  }
  return {p};
}

struct Outcome {
  bool refused = false;
  std::string message;
  std::string must_name;  // the path the message must contain
};

Outcome run_loader(const BadInput& c) {
  const std::string path = (corpus_dir() / c.file).string();
  Outcome o;
  o.must_name = path;
  auto take = [&o](const absl::Status& s) {
    o.refused = !s.ok();
    o.message = std::string(s.message());
  };
  if (c.kind == "recipe") {
    take(load_recipe(path, {}).status());
  } else if (c.kind == "safetensors") {
    take(SafetensorsFile::open(path).status());
  } else if (c.kind == "indexed") {
    take(IndexedDataset::open(path).status());
  } else if (c.kind == "llmc") {
    take(LlmcShard::open(path).status());
  } else if (c.kind == "tokenizer") {
    take(make_tokenizer("spm:" + path).status());
  } else if (c.kind == "hf_config") {
    // rotor import-hf HF_DIR CKPT with the case as HF_DIR/config.json.
    const fs::path root = fs::path(::testing::TempDir()) / "bad_inputs_hf" / case_name(c);
    fs::remove_all(root);
    const fs::path hf_dir = root / fs::path(c.file).stem();
    fs::create_directories(hf_dir);
    fs::copy_file(path, hf_dir / "config.json");
    const fs::path ckpt = root / "ckpt";
    std::ostringstream out, err;
    const int rc = run_import_hf_command({hf_dir.string(), ckpt.string()}, out, err);
    o.refused = rc != 0;
    o.message = err.str();
    o.must_name = (hf_dir / "config.json").string();
    EXPECT_EQ(rc, 2) << "rotor import-hf: an input error gives status 2";
    EXPECT_FALSE(fs::exists(ckpt)) << "a refused import must not create " << ckpt;
    EXPECT_TRUE(out.str().empty()) << out.str();
    fs::remove_all(root);
  } else {
    ADD_FAILURE() << "cases.tsv line " << c.line << ": unknown kind or malformed row: " << c.kind
                  << " " << c.file;
  }
  return o;
}

class BadInputTest : public ::testing::TestWithParam<BadInput> {};

TEST_P(BadInputTest, Refused) {
  const BadInput& c = GetParam();
  SCOPED_TRACE("cases.tsv line " + std::to_string(c.line) + ": " + c.kind + " " + c.file);
  const std::vector<fs::path> files = input_files(c);
  ASSERT_FALSE(files.empty());
  std::map<fs::path, std::vector<uint8_t>> before;
  for (const fs::path& f : files) {
    ASSERT_TRUE(fs::is_regular_file(f)) << f << " is missing: run tests/bad_inputs/make_cases.py";
    before[f] = testing::read_file_bytes(f.string());
  }

  const Outcome o = run_loader(c);
  ASSERT_TRUE(o.refused) << c.file << " was accepted";
  EXPECT_NE(o.message.find(o.must_name), std::string::npos)
      << "the error does not name the file " << o.must_name << "\n  got: " << o.message;
  for (const std::string& want : c.expected) {
    EXPECT_NE(o.message.find(want), std::string::npos)
        << "missing \"" << want << "\"\n  got: " << o.message;
  }
  for (const fs::path& f : files) {
    EXPECT_EQ(testing::read_file_bytes(f.string()), before[f]) << f << " changed";
  }
}

INSTANTIATE_TEST_SUITE_P(BadInput, BadInputTest, ::testing::ValuesIn(load_cases()),
                         [](const ::testing::TestParamInfo<BadInput>& info) {
                           return case_name(info.param);
                         });

// Every kind is covered, names are unique, and every file of the corpus is
// named by cases.tsv (a row, or a comment for helper and known-gap files).
TEST(BadInputCorpus, ManifestCoversTheCorpus) {
  const std::vector<BadInput> cases = load_cases();
  std::map<std::string, int> per_kind;
  std::set<std::string> names;
  for (const BadInput& c : cases) {
    ++per_kind[c.kind];
    EXPECT_TRUE(names.insert(case_name(c)).second) << "duplicate case " << case_name(c);
  }
  for (const char* kind : {"recipe", "safetensors", "hf_config", "indexed", "llmc", "tokenizer"}) {
    EXPECT_GE(per_kind[kind], 5) << kind;
  }
  EXPECT_EQ(per_kind.count("malformed"), 0u);

  std::ifstream in(corpus_dir() / "cases.tsv");
  const std::string manifest((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (const auto& entry : fs::recursive_directory_iterator(corpus_dir())) {
    if (!entry.is_regular_file()) continue;
    const fs::path rel = fs::relative(entry.path(), corpus_dir());
    if (rel.parent_path().empty()) continue;  // cases.tsv, make_cases.py
    std::string named = rel.string();
    if (rel.parent_path() == "indexed") named = (rel.parent_path() / rel.stem()).string();
    const bool helper = rel.filename() == "base_cycle_b.yaml";  // the other half of base_cycle_a
    EXPECT_TRUE(helper || manifest.find(named + "\t") != std::string::npos)
        << rel << " is not in cases.tsv";
  }
}

}  // namespace
}  // namespace rotor
