// `rotor prep` argument parsing (parse_prep_args, the code the binary runs):
// repeated and inline options, inputs up to the next option, and an error
// naming what is wrong for every malformed command line.
#include <gtest/gtest.h>
#include <unistd.h>

#include <sstream>

#include "data/indexed_dataset.h"
#include "trainer/cli/prep_command.h"

namespace rotor {
namespace {

TEST(PrepArgs, ParsesEveryOptionForm) {
  absl::StatusOr<PrepOptions> o = parse_prep_args(
      {"--tokenizer", "spm:/m/tokenizer.model", "--input", "a.txt", "b.txt", "--output=out/x",
       "--input=c.jsonl", "--input", "d.txt", "--jsonl-key", "body"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->tokenizer, "spm:/m/tokenizer.model");
  EXPECT_EQ(o->inputs, (std::vector<std::string>{"a.txt", "b.txt", "c.jsonl", "d.txt"}));
  EXPECT_EQ(o->output, "out/x");
  ASSERT_TRUE(o->jsonl_key.has_value());
  EXPECT_EQ(*o->jsonl_key, "body");

  absl::StatusOr<PrepOptions> plain =
      parse_prep_args({"--output", "p", "--tokenizer=bytes", "--input", "only.txt"});
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_FALSE(plain->jsonl_key.has_value()) << "no --jsonl-key: JSONL only for .jsonl inputs";
}

TEST(PrepArgs, ErrorsNameTheProblem) {
  const auto error = [](const std::vector<std::string>& args) {
    absl::StatusOr<PrepOptions> o = parse_prep_args(args);
    return o.ok() ? std::string("ok") : std::string(o.status().message());
  };
  EXPECT_EQ(error({"--input", "a", "--output", "o"}), "--tokenizer is required");
  EXPECT_EQ(error({"--tokenizer", "bytes", "--output", "o"}), "--input is required");
  EXPECT_EQ(error({"--tokenizer", "bytes", "--input", "a"}), "--output is required");
  EXPECT_EQ(error({"--tokenizer", "bytes", "--input", "--output", "o"}), "--input needs at least one file");
  EXPECT_EQ(error({"--tokenizer", "--input", "a", "--output", "o"}), "--tokenizer needs a value");
  EXPECT_EQ(error({"--tokenizer", "bytes", "--input", "a", "--output"}), "--output needs a value");
  EXPECT_EQ(error({"--tokenizer", "bytes", "--input", "a", "--output", "o", "--jsonl-key="}),
            "--jsonl-key needs a value");
  EXPECT_EQ(error({"--tokenizer", "bytes", "--input", "a", "--output", "o", "--jsonl-key", ""}),
            "--jsonl-key needs a non-empty key");
  EXPECT_EQ(error({"--tokenizer", "bytes", "--input", "a", "--output", "o", "--vocab", "3"}),
            "unknown option '--vocab'");
  EXPECT_EQ(error({"stray", "--tokenizer", "bytes", "--input", "a", "--output", "o"}),
            "unexpected argument 'stray' (inputs follow --input)");
}

TEST(PrepArgs, CommandExitStatus) {
  std::ostringstream out, err;
  EXPECT_EQ(run_prep_command({"--help"}, out, err), 0);
  EXPECT_NE(out.str().find("usage: rotor prep"), std::string::npos);
  EXPECT_EQ(run_prep_command({"--tokenizer", "bytes"}, out, err), 2);
  EXPECT_NE(err.str().find("rotor prep: --input is required"), std::string::npos) << err.str();
  err.str("");
  EXPECT_EQ(run_prep_command({"--tokenizer", "bytes", "--input", "/nonexistent/in.txt", "--output",
                              ::testing::TempDir() + "/prep_args_out"},
                             out, err),
            2);
  EXPECT_NE(err.str().find("/nonexistent/in.txt"), std::string::npos) << err.str();
}

}  // namespace
}  // namespace rotor

namespace rotor {
namespace {

// `rotor prep --synthetic`: writes the documents of eval/synthetic.h; bad
// counts, a missing length and a length too short are named.
TEST(PrepSynthetic, WritesRetrievalDocumentsAndNamesBadOptions) {
  const std::string prefix = ::testing::TempDir() + "/prep_synthetic_" + std::to_string(getpid());
  std::ostringstream out, err;
  ASSERT_EQ(run_prep_command({"--tokenizer", "bytes", "--output", prefix, "--synthetic", "passkey=3,needle=2",
                              "--length", "520", "--distractors=1", "--seed", "5"},
                             out, err),
            0)
      << err.str();
  EXPECT_NE(err.str().find("wrote 3 passkey and 2 needle documents of 520 tokens"), std::string::npos) << err.str();
  absl::StatusOr<IndexedDataset> ds = IndexedDataset::open(prefix);
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_EQ(ds->num_documents(), 5);
  EXPECT_EQ(ds->num_tokens(), 5 * 520);
  std::ostringstream o2, e2;
  ASSERT_EQ(run_prep_command({"--tokenizer", "bytes", "--output", prefix + "_range", "--synthetic", "passkey=4",
                              "--length", "450-600"},
                             o2, e2),
            0)
      << e2.str();
  EXPECT_NE(e2.str().find("documents of 450-600 tokens"), std::string::npos) << e2.str();
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const Case cases[] = {
      {{"--tokenizer", "bytes", "--output", prefix, "--synthetic", "passkey=x", "--length", "400"},
       "--synthetic: 'passkey=x' is not passkey=N or needle=N"},
      {{"--tokenizer", "bytes", "--output", prefix, "--synthetic", "maze=3", "--length", "400"}, "'maze=3'"},
      {{"--tokenizer", "bytes", "--output", prefix, "--synthetic", "passkey=3"}, "--length is required"},
      {{"--tokenizer", "bytes", "--output", prefix, "--synthetic", "passkey=3", "--length", "50"},
       "use a length of at least"},
      {{"--tokenizer", "bytes", "--output", prefix, "--synthetic", "passkey=3", "--length", "500-400"},
       "--length: '500-400' is not N or MIN-MAX"},
      {{"--tokenizer", "bytes", "--output", prefix, "--synthetic", "passkey=3", "--length", "400", "--input", "a"},
       "unknown option '--input' (with --synthetic)"},
  };
  for (const Case& c : cases) {
    std::ostringstream o, e;
    EXPECT_EQ(run_prep_command(c.args, o, e), 2) << c.message;
    EXPECT_NE(e.str().find(c.message), std::string::npos) << "want '" << c.message << "' in " << e.str();
  }
}

}  // namespace
}  // namespace rotor
