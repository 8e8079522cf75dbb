// Checkpoints: a run stopped after step k and resumed from its checkpoint
// gives bit-identical losses to the uninterrupted run (CPU, deterministic
// kernels); corrupted or truncated files are errors naming the file; `keep`
// bounds the number of checkpoints; `latest` names the newest.
#include <gtest/gtest.h>

#include <sys/resource.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <limits>

#include "kernels/random.h"
#include "model/llama.h"
#include "trainer/checkpoint.h"
#include "tests/common/testing.h"
#include "tests/common/tiny_config.h"
#include "trainer/optimizer.h"

namespace rotor {
namespace {

namespace fs = std::filesystem;

Batch batch_for_step(int64_t step) {  // a different batch every step
  Batch b;
  b.input_ids = Tensor::empty({2, 8}, DType::kI32);
  b.targets = Tensor::empty({2, 8}, DType::kI32);
  for (int64_t i = 0; i < 16; ++i) {
    b.input_ids.data<int32_t>()[i] = static_cast<int32_t>(mix64(step * 100 + i) % 32);
    b.targets.data<int32_t>()[i] = static_cast<int32_t>(mix64(step * 100 + i + 50) % 32);
  }
  return b;
}

struct TrainRun {
  LlamaModel model;
  AdamWOptimizer opt;
};

TrainRun make_run() {
  auto m = LlamaModel::create(testing::tiny_config(32), LlamaOptions());
  EXPECT_TRUE(m.ok());
  m->init_weights(9);
  AdamWOptimizer opt(m->parameters(), AdamWHyper{.lr = 0, .beta1 = 0.9, .beta2 = 0.95,
                                                .eps = 1e-8, .weight_decay = 0.1});
  return TrainRun{std::move(*m), std::move(opt)};
}

double train_step(TrainRun& r, int64_t step) {
  r.model.zero_grad();
  const double loss = r.model.forward_backward(batch_for_step(step));
  r.opt.step(r.model.parameters(), 3e-3, 1.0);
  return loss;
}

TEST(Checkpoint, ResumeGivesIdenticalLosses) {
  const std::string dir = ::testing::TempDir() + "/ckpt_resume";
  fs::remove_all(dir);
  TrainRun full = make_run();
  std::vector<double> want;
  for (int64_t s = 1; s <= 8; ++s) want.push_back(train_step(full, s));

  TrainRun first = make_run();
  for (int64_t s = 1; s <= 5; ++s) EXPECT_EQ(train_step(first, s), want[s - 1]);
  CheckpointInfo info{.step = 5, .sampler = {{"position", 5}}, .recipe_yaml = "train:\n  steps: 8\n"};
  // A file copied in (the trainer copies a SentencePiece model this way).
  fs::create_directories(dir);
  const std::vector<uint8_t> spm = {'s', 'p', 'm', 0, 1, 2, 255};
  testing::write_file_bytes(dir + "/source.model", spm);
  info.extra_files["tokenizer.model"] = dir + "/source.model";
  ASSERT_TRUE(save_checkpoint(dir, info, first.model.parameters(), first.opt, 2).ok());
  EXPECT_EQ(testing::read_file_bytes(dir + "/checkpoints/step_00000005/tokenizer.model"), spm);
  CheckpointInfo missing = info;
  missing.extra_files["tokenizer.model"] = dir + "/nowhere.model";
  absl::Status no_source = save_checkpoint(dir + "/other", missing, first.model.parameters(), first.opt, 2);
  EXPECT_NE(no_source.message().find(dir + "/nowhere.model"), std::string::npos) << no_source;

  TrainRun resumed = make_run();  // fresh process state, other init would not matter
  auto latest = latest_checkpoint(dir);
  ASSERT_TRUE(latest.ok() && !latest->empty()) << latest.status();
  auto loaded = load_checkpoint(*latest, resumed.model.parameters(), &resumed.opt);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->step, 5);
  EXPECT_EQ(loaded->sampler["position"], 5);
  EXPECT_EQ(loaded->recipe_yaml, info.recipe_yaml);
  for (int64_t s = 6; s <= 8; ++s) EXPECT_EQ(train_step(resumed, s), want[s - 1]) << "step " << s;
  // The copied file is checksummed like the others.
  testing::write_file_bytes(dir + "/checkpoints/step_00000005/tokenizer.model", {'s', 'p', 'm'});
  auto bad = load_checkpoint(*latest, resumed.model.parameters(), nullptr);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("tokenizer.model: checksum mismatch"), std::string::npos) << bad.status();
}

TEST(Checkpoint, KeepLatestAndCorruption) {
  const std::string dir = ::testing::TempDir() + "/ckpt_keep";
  fs::remove_all(dir);
  EXPECT_EQ(*latest_checkpoint(dir), "") << "no checkpoint yet";
  TrainRun r = make_run();
  fs::create_directories(dir + "/checkpoints/step_00000000.tmp-1");  // a killed save
  for (int64_t s = 1; s <= 3; ++s) {
    train_step(r, s);
    ASSERT_TRUE(save_checkpoint(dir, {.step = s}, r.model.parameters(), r.opt, 2).ok());
  }
  EXPECT_FALSE(fs::exists(dir + "/checkpoints/step_00000001")) << "keep=2 removes the oldest";
  EXPECT_TRUE(fs::exists(dir + "/checkpoints/step_00000002"));
  EXPECT_FALSE(fs::exists(dir + "/checkpoints/step_00000000.tmp-1")) << "stale tmp removed";
  EXPECT_EQ(*latest_checkpoint(dir), dir + "/checkpoints/step_00000003");

  // Flip one byte of the weights: the checksum names the file.
  const std::string model = dir + "/checkpoints/step_00000003/model.safetensors";
  {
    std::fstream f(model, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-3, std::ios::end);
    f.put('\x7f');
  }
  TrainRun other = make_run();
  auto bad = load_checkpoint(dir + "/checkpoints/step_00000003", other.model.parameters(), &other.opt);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("model.safetensors: checksum mismatch"), std::string::npos)
      << bad.status();
  // Truncate the optimizer file of the other checkpoint.
  const std::string opt = dir + "/checkpoints/step_00000002/optimizer.safetensors";
  fs::resize_file(opt, fs::file_size(opt) / 2);
  bad = load_checkpoint(dir + "/checkpoints/step_00000002", other.model.parameters(), &other.opt);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("optimizer.safetensors: checksum mismatch"), std::string::npos)
      << bad.status();
}

// Weights or moments with NaN or inf are never saved: an error naming the
// tensor, nothing written, `latest` unchanged.
TEST(Checkpoint, RefusesNonFiniteTensors) {
  const std::string dir = ::testing::TempDir() + "/ckpt_nan";
  fs::remove_all(dir);
  TrainRun r = make_run();
  train_step(r, 1);
  ASSERT_TRUE(save_checkpoint(dir, {.step = 1}, r.model.parameters(), r.opt, 0).ok());
  Parameter* p = r.model.find("model.layers.1.mlp.up_proj.weight");
  ASSERT_NE(p, nullptr);
  p->value.view({p->value.numel()}).narrow(3, 1).fill(std::numeric_limits<double>::infinity());
  absl::Status s = save_checkpoint(dir, {.step = 2}, r.model.parameters(), r.opt, 0);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("model.layers.1.mlp.up_proj.weight holds NaN or inf"), std::string::npos) << s;
  EXPECT_FALSE(fs::exists(dir + "/checkpoints/step_00000002"));
  EXPECT_EQ(*latest_checkpoint(dir), dir + "/checkpoints/step_00000001");
}

// A write that fails (here: the file-size limit, EFBIG, as a full disk gives
// ENOSPC) is an error naming the file; the partial directory is removed and
// the previous checkpoint stays the latest and loads.
TEST(Checkpoint, FailedWriteKeepsThePreviousOne) {
  const std::string dir = ::testing::TempDir() + "/ckpt_full";
  fs::remove_all(dir);
  TrainRun r = make_run();
  train_step(r, 1);
  ASSERT_TRUE(save_checkpoint(dir, {.step = 1}, r.model.parameters(), r.opt, 0).ok());
  train_step(r, 2);
  const auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  rlimit old_limit{};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old_limit), 0);
  rlimit small = old_limit;
  small.rlim_cur = 4096;  // bytes per file: below model.safetensors
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  absl::Status s = save_checkpoint(dir, {.step = 2}, r.model.parameters(), r.opt, 0);
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &old_limit), 0);
  std::signal(SIGXFSZ, old_handler);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("checkpoint of step 2 not saved"), std::string::npos) << s;
  EXPECT_NE(s.message().find("model.safetensors"), std::string::npos) << s;
  for (const auto& e : fs::directory_iterator(dir + "/checkpoints"))
    EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos) << e.path();
  EXPECT_EQ(*latest_checkpoint(dir), dir + "/checkpoints/step_00000001");
  TrainRun other = make_run();
  EXPECT_TRUE(load_checkpoint(dir + "/checkpoints/step_00000001", other.model.parameters(), &other.opt).ok());
}

// The stages of a write are reported in order; resume_candidates lists the
// complete directories newest first, including one renamed into place whose
// `latest` update never happened, and never a .tmp one.
TEST(Checkpoint, StagesAndResumeCandidates) {
  const std::string dir = ::testing::TempDir() + "/ckpt_stages";
  fs::remove_all(dir);
  TrainRun r = make_run();
  std::vector<int> stages;
  CheckpointInfo info{.step = 4};
  info.after_stage = [&](int stage) { stages.push_back(stage); };
  ASSERT_TRUE(save_checkpoint(dir, info, r.model.parameters(), r.opt, 0).ok());
  EXPECT_EQ(stages, (std::vector<int>{1, 2, 3, 4}));
  ASSERT_TRUE(save_checkpoint(dir, {.step = 12}, r.model.parameters(), r.opt, 0).ok());
  std::ofstream(dir + "/checkpoints/latest") << "step_00000004\n";  // killed before latest moved
  fs::create_directories(dir + "/checkpoints/step_00000016.tmp-77");
  EXPECT_EQ(resume_candidates(dir), (std::vector<std::string>{dir + "/checkpoints/step_00000012",
                                                              dir + "/checkpoints/step_00000004"}));
  EXPECT_TRUE(resume_candidates(dir + "/none").empty());
}

// A state.json that is JSON but not a checkpoint's is an error naming it
// (no exception from a wrong type).
TEST(Checkpoint, MalformedStateJson) {
  const std::string dir = ::testing::TempDir() + "/ckpt_state";
  fs::remove_all(dir);
  TrainRun r = make_run();
  ASSERT_TRUE(save_checkpoint(dir, {.step = 1}, r.model.parameters(), r.opt, 0).ok());
  const std::string state = dir + "/checkpoints/step_00000001/state.json";
  for (const char* text : {R"({"step": 1, "files": {"model.safetensors": 5}})",
                           R"({"step": "1", "files": {}})",
                           R"({"step": 1, "files": {"model.safetensors": {"bytes": -1, "crc32": 0}}})",
                           R"({"step": 1, "files": {"../x": {"bytes": 1, "crc32": 0}}})",
                           R"({"step": 1, "files": {}})", "[1, 2]", "{"}) {
    std::ofstream(state, std::ios::trunc) << text;
    auto bad = load_checkpoint(dir + "/checkpoints/step_00000001", r.model.parameters(), &r.opt);
    ASSERT_FALSE(bad.ok()) << text;
    EXPECT_NE(bad.status().message().find(state), std::string::npos) << text << ": " << bad.status();
  }
}

}  // namespace
}  // namespace rotor
