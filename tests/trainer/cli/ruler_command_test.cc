// `rotor eval ruler` on a tiny saved checkpoint: writes <out>/ruler.csv with
// the exact header and one row per (task, length), the --dump lines (one per
// sample, every field), takes the essay haystack from data.heldout (else the
// packaged text, said on stderr), repeats itself exactly, and reports bad
// tasks, lengths and options by name with status 2 before loading a model.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "data/indexed_dataset.h"
#include "eval/ruler_tasks.h"
#include "nlohmann/json.hpp"
#include "tests/trainer/tiny_checkpoint.h"
#include "trainer/cli/ruler_command.h"

namespace rotor {
namespace {

namespace fs = std::filesystem;

struct Saved {
  std::string dir, recipe, run_dir, heldout;
};

const Saved& saved() {
  static const Saved s = [] {
    Saved s;
    s.dir = ::testing::TempDir() + "/ruler_command_test_" + std::to_string(getpid());
    fs::remove_all(s.dir);
    fs::create_directories(s.dir);
    s.run_dir = s.dir + "/tiny";
    s.heldout = s.dir + "/heldout";
    s.recipe = s.dir + "/tiny.yaml";
    absl::StatusOr<IndexedDatasetWriter> w = IndexedDatasetWriter::create(s.heldout, TokenDType::kUint16);
    EXPECT_TRUE(w.ok()) << w.status();
    for (int doc = 0; doc < 4; ++doc) {
      std::vector<int64_t> ids;
      std::string text;
      for (int i = 0; text.size() < 400; ++i)
        text += "Report " + std::to_string(doc) + " line " + std::to_string(i) + " says little. ";
      for (unsigned char c : text) ids.push_back(c);
      ids.push_back(257);  // eos, dropped from the essay
      EXPECT_TRUE(w->add_sequence(ids).ok());
      w->end_document();
    }
    EXPECT_TRUE(w->finalize().ok());
    std::ofstream(s.recipe)
        << "model: {vocab_size: 260, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2,\n"
           "        num_attention_heads: 2, num_key_value_heads: 1}\n"
           "rope: {method: none, theta: 10000}\n"
           "data: {datasets: [{path: " << s.dir << "/no-such-corpus}], sequence_length: 1024,\n"
           "       heldout: " << s.heldout << ", tokenizer: bytes}\n"
           "train: {steps: 7, global_batch_size: 1, micro_batch_size: 1, lr: 1.0e-3, seed: 5}\n"
           "run: {dir: " << s.run_dir << "}\n";
    testing::save_tiny_checkpoint(s.recipe, s.run_dir, 7, 3);
    return s;
  }();
  return s;
}

struct Result {
  int code;
  std::string out, err;
};

Result run(const std::vector<std::string>& args) {
  std::ostringstream out, err;
  const int code = run_eval_ruler(args, out, err);
  return {code, out.str(), err.str()};
}

std::vector<std::string> lines_of(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}

TEST(RulerCommand, WritesOneRowPerTaskAndLengthAndADumpLinePerSample) {
  const Saved& s = saved();
  const std::string out_dir = s.dir + "/out", dump = s.dir + "/dump/samples.jsonl";
  const std::vector<std::string> args = {s.recipe, "--out", out_dir, "--tasks", "niah_single_2,fwe,vt",
                                         "--lengths", "1100,1300", "--samples", "2", "--dump", dump};
  const Result r = run(args);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("ruler vt length 1300: "), std::string::npos) << r.out;
  EXPECT_EQ(r.err, "");  // held-out text: nothing to say
  const std::vector<std::string> lines = lines_of(out_dir + "/ruler.csv");
  ASSERT_EQ(lines.size(), 7u);
  EXPECT_EQ(lines[0], "run,step,task,length,samples,passed,pass_rate,mean_entropy");
  EXPECT_EQ(lines[1].rfind("tiny,7,niah_single_2,1100,2,", 0), 0u) << lines[1];
  EXPECT_EQ(lines[4].rfind("tiny,7,fwe,1300,2,", 0), 0u) << lines[4];
  EXPECT_EQ(lines[6].rfind("tiny,7,vt,1300,2,", 0), 0u) << lines[6];
  const std::vector<std::string> records = lines_of(dump);
  ASSERT_EQ(records.size(), 12u);
  for (const std::string& line : records) {
    const nlohmann::json j = nlohmann::json::parse(line);
    for (const char* key : {"task", "length", "index", "input", "answers", "output", "score", "tokens"})
      EXPECT_TRUE(j.contains(key)) << key << " in " << line.substr(0, 200);
    EXPECT_LE(j["tokens"].get<int64_t>(), j["length"].get<int64_t>());
    EXPECT_GE(j["score"].get<double>(), 0.0);
  }
  const nlohmann::json first = nlohmann::json::parse(records[0]);
  EXPECT_EQ(first["task"], "niah_single_2");
  EXPECT_EQ(first["index"], 0);
  EXPECT_NE(first["input"].get<std::string>().find("Report 0 line 0 says little."), std::string::npos)
      << "the essay haystack is data.heldout's text";
  EXPECT_EQ(nlohmann::json::parse(records[11])["index"], 1);

  // The same command again: the same samples, answers and scores.
  ASSERT_EQ(run(args).code, 0);
  EXPECT_EQ(lines_of(dump), records);
  EXPECT_EQ(lines_of(out_dir + "/ruler.csv"), lines);
}

TEST(RulerCommand, WithoutReadableDataTheEssayIsThePackagedTextAndOutputGoesToTheRunsEval) {
  const Saved& s = saved();
  const std::string dump = s.dir + "/packaged.jsonl";
  // No held-out set, and the training data (no-such-corpus) does not exist here.
  const Result r = run({s.recipe, "--set", "data.heldout=", "--tasks",
                        "niah_single_3", "--lengths", "1024", "--samples", "1", "--dump", dump});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("packaged public-domain text"), std::string::npos) << r.err;
  EXPECT_NE(lines_of(dump).at(0).find("Call me Ishmael."), std::string::npos);
  const std::vector<std::string> lines = lines_of(s.run_dir + "/eval/ruler.csv");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[1].rfind("tiny,7,niah_single_3,1024,1,", 0), 0u) << lines[1];
}

// Without --tasks every task that fits each length runs; the ones that do
// not are named on stdout, not an error (a named task must fit: see below).
TEST(RulerCommand, WithoutTasksEveryTaskThatFitsRuns) {
  const Saved& s = saved();
  const std::string out_dir = s.dir + "/fitting";
  const Result r = run({s.recipe, "--out", out_dir, "--lengths", "1100", "--samples", "1"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("ruler: cwe skipped at 1100: shorter than the task's minimum"), std::string::npos) << r.out;
  const std::vector<std::string> lines = lines_of(out_dir + "/ruler.csv");
  ASSERT_EQ(lines.size(), 1 + ruler::all_tasks().size() - 1) << "every task but cwe";
  for (const std::string& line : lines) EXPECT_EQ(line.find(",cwe,"), std::string::npos) << line;
  EXPECT_EQ(lines[10].rfind("tiny,7,fwe,1100,1,", 0), 0u) << lines[10];
}

TEST(RulerCommand, ErrorsNameTheTaskLengthOrOption) {
  const Saved& s = saved();
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const Case cases[] = {
      {{s.recipe, "--tasks", "niah_single_1,qa_2"}, "unknown RULER task 'qa_2' (valid: niah_single_1,"},
      {{s.recipe, "--tasks", "vt", "--lengths", "500"}, "length 500 is too short for RULER task vt"},
      {{s.recipe, "--tasks", "cwe", "--lengths", "1024"}, "need lengths of at least"},
      {{s.recipe, "--samples", "0"}, "--samples: '0' is not a positive integer"},
      {{s.recipe, "--lengths", "1k"}, "--lengths: '1k' is not a positive integer"},
      {{s.recipe, "--bogus"}, "unknown option '--bogus'"},
      {{s.recipe, "--dump"}, "--dump needs a value"},
      {{}, "RECIPE.yaml is required"},
      {{s.recipe, "--checkpoint", s.dir + "/nowhere"}, s.dir + "/nowhere"},
      {{s.recipe, "--tasks", "niah_single_2", "--set", "data.heldout=" + s.dir + "/nothing"}, s.dir + "/nothing"},
  };
  for (const Case& c : cases) {
    const Result r = run(c.args);
    EXPECT_EQ(r.code, 2) << c.message << "\n" << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << "want '" << c.message << "' in:\n" << r.err;
  }
  const Result help = run({"--help"});
  EXPECT_EQ(help.code, 0);
  EXPECT_NE(help.out.find("niah_multikey_3"), std::string::npos);
}

}  // namespace
}  // namespace rotor
