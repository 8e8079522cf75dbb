// `rotor train` end to end on real text (the GPL-3 text Debian ships, as
// bytes): the loss falls, metrics.jsonl has a record per step, and a run
// killed after a checkpoint resumes to exactly the losses of the
// uninterrupted run.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "data/indexed_dataset.h"
#include "kernels/device.h"
#include "trainer/cli/train_command.h"
#include "trainer/cli/sweep_command.h"
#include "trainer/safetensors.h"
#include "trainer/tensorboard.h"
#include "trainer/train.h"
#include "tests/trainer/corpus.h"

namespace rotor {
namespace {

namespace fs = std::filesystem;

std::string write_recipe(const std::string& dir, const std::string& corpus) {
  const std::string path = dir + "/tiny.yaml";
  std::ofstream(path) << "model: {vocab_size: 260, hidden_size: 32, intermediate_size: 64,\n"
                         "        num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2}\n"
                         "rope: {method: none, theta: 10000}\n"
                         "data: {datasets: [{path: " << corpus << "}], heldout: " << corpus << ",\n"
                         "       sequence_length: 64, document_masking: true}\n"
                         "train: {steps: 12, global_batch_size: 4, micro_batch_size: 2, lr: 1.0e-2,\n"
                         "        min_lr: 1.0e-3, warmup_steps: 2, seed: 5}\n"
                         "checkpoint: {interval: 6, keep: 3}\n"
                         "eval: {interval: 6, lengths: [64, 128]}\n";
  return path;
}

std::vector<nlohmann::json> read_metrics(const std::string& run_dir) {
  std::vector<nlohmann::json> out;
  std::ifstream in(run_dir + "/metrics.jsonl");
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

TEST(Train, LossFallsAndResumeIsExact) {
  const std::string dir = ::testing::TempDir() + "/train_e2e";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string corpus = testing::write_corpus(dir);
  const std::string recipe = write_recipe(dir, corpus);
  std::ostringstream out, err;

  const std::string run_a = dir + "/a";
  ASSERT_EQ(run_train_command({recipe, "--set", "run.dir=" + run_a}, out, err), 0) << err.str();
  const std::vector<nlohmann::json> a = read_metrics(run_a);
  ASSERT_EQ(a.size(), 12u);
  EXPECT_LT(a.back()["loss"].get<double>(), a.front()["loss"].get<double>() - 1.0)
      << "byte-level loss should fall by > 1 nat in 12 steps";
  EXPECT_TRUE(a[5].contains("eval_loss_128")) << a[5].dump();
  // Attention entropy of the held-out rows: per layer at the longest length,
  // inside (0, ln 128) (a row of query i sees i + 1 keys), and their mean.
  const int64_t layers = 2;
  double mean = 0;
  for (int64_t l = 0; l < layers; ++l) {
    const std::string key = "eval_entropy_128_layer" + std::to_string(l);
    ASSERT_TRUE(a[5].contains(key)) << a[5].dump();
    const double h = a[5][key].get<double>();
    EXPECT_GT(h, 0.0);
    EXPECT_LT(h, std::log(128.0));
    mean += h / layers;
  }
  EXPECT_NEAR(a[5]["eval_entropy_128"].get<double>(), mean, 1e-12);
  EXPECT_NE(out.str().find("step 12/12 | loss"), std::string::npos) << out.str();
  EXPECT_GT(a.back()["tflops"].get<double>(), 0.0);
  EXPECT_FALSE(a.back().contains("mfu")) << "no peak is known on the CPU";
  EXPECT_EQ(out.str().find("MFU"), std::string::npos);
  // TensorBoard: the same numbers, one event per step.
  std::vector<fs::path> events;
  for (const fs::directory_entry& e : fs::directory_iterator(run_a + "/tb")) events.push_back(e.path());
  ASSERT_EQ(events.size(), 1u);
  absl::StatusOr<std::vector<TbScalar>> tb = read_tensorboard_scalars(events[0].string());
  ASSERT_TRUE(tb.ok()) << tb.status();
  int losses = 0, evals = 0;
  for (const TbScalar& x : *tb) {
    if (x.tag == "train/loss") {
      EXPECT_FLOAT_EQ(x.value, a[x.step - 1]["loss"].get<double>());
      ++losses;
    }
    if (x.tag == "eval/loss_128") {
      EXPECT_FLOAT_EQ(x.value, a[x.step - 1]["eval_loss_128"].get<double>());
      ++evals;
    }
  }
  EXPECT_EQ(losses, 12);
  EXPECT_EQ(evals, 2) << "eval at steps 6 and 12";

  // Run B: the same recipe, "killed" after the step-6 checkpoint.
  const std::string run_b = dir + "/b";
  ASSERT_EQ(run_train_command({recipe, "--set", "run.dir=" + run_b}, out, err), 0) << err.str();
  fs::remove_all(run_b + "/checkpoints/step_00000012");
  std::ofstream(run_b + "/checkpoints/latest") << "step_00000006\n";
  {
    std::vector<nlohmann::json> b = read_metrics(run_b);
    std::ofstream m(run_b + "/metrics.jsonl", std::ios::trunc);
    for (size_t i = 0; i < 6; ++i) m << b[i].dump() << "\n";
  }
  std::ostringstream out2;
  ASSERT_EQ(run_train_command({recipe, "--set", "run.dir=" + run_b}, out2, err), 0) << err.str();
  EXPECT_NE(out2.str().find("resumed from"), std::string::npos) << out2.str();
  const std::vector<nlohmann::json> b = read_metrics(run_b);
  ASSERT_EQ(b.size(), 12u);
  for (size_t i = 0; i < 12; ++i) {
    EXPECT_EQ(b[i]["loss"].get<double>(), a[i]["loss"].get<double>()) << "step " << i + 1;
    EXPECT_EQ(b[i]["grad_norm"].get<double>(), a[i]["grad_norm"].get<double>()) << "step " << i + 1;
  }
}

// The checked stand-in device (kernels/sim.h): `device: sim` trains through
// the device path (parameters, activations, optimizer state and held-out eval
// on the device, checkpoints through the copy API) and gives the cpu run's
// numbers bit for bit (the same kernels in the same order); a sim run killed
// after a checkpoint resumes to the same numbers, and its checkpoints are the
// cpu run's bytes.
TEST(Train, SimDeviceMatchesCpuBitForBitAndResumes) {
  const std::string dir = ::testing::TempDir() + "/train_sim";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string recipe = write_recipe(dir, testing::write_corpus(dir));
  std::ostringstream out, err;
  ASSERT_EQ(run_train_command({recipe, "--set", "run.dir=" + dir + "/cpu"}, out, err), 0) << err.str();
  const std::string sim = dir + "/sim";
  ASSERT_EQ(run_train_command({recipe, "--set", "run.dir=" + sim, "--set", "device=sim"}, out, err), 0)
      << err.str();
  for (const char* ckpt : {"step_00000006", "step_00000012"})
    for (const char* file : {"model.safetensors", "optimizer.safetensors"}) {
      std::ifstream a(dir + "/cpu/checkpoints/" + ckpt + "/" + file, std::ios::binary);
      std::ifstream b(sim + "/checkpoints/" + ckpt + "/" + file, std::ios::binary);
      std::stringstream sa, sb;
      sa << a.rdbuf();
      sb << b.rdbuf();
      ASSERT_GT(sa.str().size(), 1000u) << ckpt << "/" << file;
      EXPECT_TRUE(sa.str() == sb.str()) << ckpt << "/" << file << " differs between cpu and sim";
    }
  // Kill the sim run after step 6 and resume it on sim.
  fs::remove_all(sim + "/checkpoints/step_00000012");
  std::ofstream(sim + "/checkpoints/latest") << "step_00000006\n";
  {
    std::vector<nlohmann::json> m = read_metrics(sim);
    std::ofstream f(sim + "/metrics.jsonl", std::ios::trunc);
    for (size_t i = 0; i < 6; ++i) f << m[i].dump() << "\n";
  }
  ASSERT_EQ(run_train_command({recipe, "--set", "run.dir=" + sim, "--set", "device=sim"}, out, err), 0)
      << err.str();
  const std::vector<nlohmann::json> a = read_metrics(dir + "/cpu"), b = read_metrics(sim);
  ASSERT_EQ(a.size(), 12u);
  ASSERT_EQ(b.size(), 12u);
  for (size_t i = 0; i < 12; ++i) {
    for (const char* key : {"loss", "grad_norm"}) EXPECT_EQ(b[i][key], a[i][key]) << key << " at step " << i + 1;
  }
  for (size_t i : {5u, 11u}) {
    ASSERT_TRUE(a[i].contains("eval_loss_128")) << a[i].dump();
    for (const char* key : {"eval_loss_64", "eval_loss_128", "eval_entropy_128"})
      EXPECT_EQ(b[i][key], a[i][key]) << key << " at step " << i + 1;
  }
}

// train.precision: bf16 (bf16 working weights and activations, f32 masters,
// moments, gradients and statistics) on a model of the old byte demo's size
// (hidden 128, 4 layers) for 40 steps: the final loss is within 3%
// of the f32 run's (bf16 rounds each activation by up to 2^-9 relative; the
// runs drift apart, not away: measured 0.1% on the demo data); the checkpoint
// holds f32 masters; a bf16 run killed at step 20 resumes to the same losses
// bit for bit; and sim gives the cpu's bf16 numbers bit for bit.
TEST(Train, Bf16MixedPrecisionTracksF32AndResumes) {
  const std::string dir = ::testing::TempDir() + "/train_bf16";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string recipe = write_recipe(dir, testing::write_corpus(dir));
  const std::vector<std::string> demo = {
      recipe, "--set", "model.hidden_size=128", "--set", "model.intermediate_size=352", "--set",
      "model.num_hidden_layers=4", "--set", "train.steps=40", "--set", "train.global_batch_size=8", "--set",
      "train.micro_batch_size=4", "--set", "train.lr=3e-3", "--set", "train.warmup_steps=5", "--set",
      "checkpoint.interval=20", "--set", "eval.interval=40"};
  auto run = [&](const std::string& name, std::vector<std::string> extra) {
    std::vector<std::string> args = demo;
    args.insert(args.end(), {"--set", "run.dir=" + dir + "/" + name});
    args.insert(args.end(), extra.begin(), extra.end());
    std::ostringstream out, err;
    EXPECT_EQ(run_train_command(args, out, err), 0) << err.str();
    return read_metrics(dir + "/" + name);
  };
  const std::vector<nlohmann::json> f32 = run("f32", {});
  const std::vector<nlohmann::json> bf16 = run("bf16", {"--set", "train.precision=bf16"});
  ASSERT_EQ(f32.size(), 40u);
  ASSERT_EQ(bf16.size(), 40u);
  const double a = f32.back()["loss"].get<double>(), b = bf16.back()["loss"].get<double>();
  EXPECT_LT(a, f32.front()["loss"].get<double>() - 1.0) << "the f32 run must learn";
  EXPECT_NE(a, b) << "bf16 must actually compute in bf16";
  EXPECT_LT(std::abs(b - a), 0.03 * a) << "f32 " << a << ", bf16 " << b;

  absl::StatusOr<SafetensorsFile> ckpt = SafetensorsFile::open(dir + "/bf16/checkpoints/step_00000040/model.safetensors");
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  ASSERT_FALSE(ckpt->entries().empty());
  for (const SafetensorsEntry& e : ckpt->entries()) EXPECT_EQ(e.dtype, "F32") << e.name << ": masters are f32";

  const std::string resumed = dir + "/bf16-resumed";
  fs::create_directories(resumed + "/checkpoints");
  fs::copy(dir + "/bf16/checkpoints/step_00000020", resumed + "/checkpoints/step_00000020",
           fs::copy_options::recursive);
  std::ofstream(resumed + "/checkpoints/latest") << "step_00000020\n";
  {
    std::ofstream m(resumed + "/metrics.jsonl");
    for (size_t i = 0; i < 20; ++i) m << bf16[i].dump() << "\n";
  }
  const std::vector<nlohmann::json> r = run("bf16-resumed", {"--set", "train.precision=bf16"});
  const std::vector<nlohmann::json> sim = run("bf16-sim", {"--set", "train.precision=bf16", "--set", "device=sim"});
  ASSERT_EQ(r.size(), 40u);
  ASSERT_EQ(sim.size(), 40u);
  for (size_t i = 0; i < 40; ++i) {
    EXPECT_EQ(r[i]["loss"], bf16[i]["loss"]) << "resumed, step " << i + 1;
    EXPECT_EQ(r[i]["grad_norm"], bf16[i]["grad_norm"]) << "resumed, step " << i + 1;
    EXPECT_EQ(sim[i]["loss"], bf16[i]["loss"]) << "sim, step " << i + 1;
  }
}

// device: cuda where no GPU can be used stops at start with CUDA's reason
// (or "built without CUDA"), before anything is written: never a silent run
// on the CPU.
TEST(Train, CudaWithoutAGpuFailsAtStartSayingWhy) {
  if (cuda_device_count() > 0) GTEST_SKIP() << "a GPU is usable here";
  const std::string dir = ::testing::TempDir() + "/train_cuda";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string recipe = write_recipe(dir, testing::write_corpus(dir));
  std::ostringstream out, err;
  EXPECT_EQ(run_train_command({recipe, "--set", "run.dir=" + dir + "/run", "--set", "device=cuda"}, out, err), 1);
  const std::string why = cuda_unavailable_reason();
  ASSERT_FALSE(why.empty());
  EXPECT_NE(err.str().find("rotor train: device: cuda: " + why), std::string::npos) << err.str();
  EXPECT_FALSE(fs::exists(dir + "/run")) << "nothing may be written";
}

// Continual pretraining: a second run starts from the first run's weights
// (model.init_from) with a longer sequence and another RoPE base, and its
// first loss is far below a fresh model's.
TEST(Train, InitFromAnotherRun) {
  const std::string dir = ::testing::TempDir() + "/train_init_from";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string corpus = testing::write_corpus(dir);
  const std::string recipe = write_recipe(dir, corpus);
  std::ostringstream out, err;
  ASSERT_EQ(run_train_command({recipe, "--set", "run.dir=" + dir + "/base"}, out, err), 0) << err.str();
  const double base_first = read_metrics(dir + "/base").front()["loss"].get<double>();
  const double base_last = read_metrics(dir + "/base").back()["loss"].get<double>();
  ASSERT_EQ(run_train_command({recipe, "--set", "run.dir=" + dir + "/long", "--set",
                               "model.init_from=" + dir + "/base", "--set", "data.sequence_length=128",
                               "--set", "rope.theta=40000", "--set", "train.steps=2",
                               "--set", "run.peak_tflops=0.5"},
                              out, err),
            0)
      << err.str();
  EXPECT_NE(out.str().find("initialised from " + dir + "/base/checkpoints/step_00000012"),
            std::string::npos)
      << out.str();
  const double long_first = read_metrics(dir + "/long").front()["loss"].get<double>();
  // With a peak given, MFU = model TFLOP/s / peak.
  const nlohmann::json rec = read_metrics(dir + "/long").back();
  EXPECT_DOUBLE_EQ(rec["mfu"].get<double>(), rec["tflops"].get<double>() / 0.5);
  EXPECT_NE(out.str().find("% | ETA"), std::string::npos) << out.str();
  EXPECT_LT(long_first, base_first - 0.5 * (base_first - base_last)) << "weights were not loaded";
  EXPECT_EQ(run_train_command({recipe, "--set", "run.dir=" + dir + "/bad", "--set",
                               "model.init_from=" + dir + "/nothing"},
                              out, err),
            1);
  EXPECT_NE(err.str().find("model.init_from"), std::string::npos) << err.str();
}

// `rotor sweep`: the listing names each run and its values; --run trains them
// one after another in their own directories, goes on past a failed run (exit
// 1), and a second --run resumes: finished runs add nothing.
TEST(Sweep, ListsAndRunsTheGrid) {
  const std::string dir = ::testing::TempDir() + "/sweep_e2e";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string corpus = testing::write_corpus(dir);
  const std::string recipe = dir + "/grid.yaml";
  {
    std::ifstream in(write_recipe(dir, corpus));
    std::stringstream text;
    text << in.rdbuf();
    std::ofstream(recipe) << text.str() << "sweep:\n  data.datasets: [[{path: " << corpus
                          << "}], [{path: " << dir << "/missing}]]\n  rope.theta: [10000, 40000]\n";
  }
  const std::vector<std::string> common = {recipe, "--set", "run.dir=" + dir + "/runs", "--set",
                                           "train.steps=2", "--set", "checkpoint.interval=2"};
  std::ostringstream list, err;
  ASSERT_EQ(run_sweep_command(common, list, err), 0) << err.str();
  std::vector<std::string> lines;
  std::istringstream ls(list.str());
  for (std::string line; std::getline(ls, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 4u) << list.str();
  EXPECT_EQ(lines[0].rfind("grid-data.datasets=", 0), 0u) << lines[0];
  EXPECT_NE(lines[1].find("\trope.theta=40000"), std::string::npos) << lines[1];
  EXPECT_NE(lines[0].find("\trope.theta=10000"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("\t" + dir + "/runs/"), std::string::npos) << lines[0];
  EXPECT_NE(lines[3].find("missing"), std::string::npos) << lines[3];

  std::vector<std::string> with_run = common;
  with_run.push_back("--run");
  std::ostringstream out;
  err.str("");
  EXPECT_EQ(run_sweep_command(with_run, out, err), 1) << "two runs read a missing dataset";
  EXPECT_NE(err.str().find(dir + "/missing"), std::string::npos) << err.str();
  EXPECT_NE(err.str().find("2 of 4 run(s) failed"), std::string::npos) << err.str();
  int trained = 0;
  for (const fs::directory_entry& e : fs::directory_iterator(dir + "/runs")) {
    if (!fs::exists(e.path() / "metrics.jsonl")) continue;
    EXPECT_EQ(read_metrics(e.path().string()).size(), 2u) << e.path();
    ++trained;
  }
  EXPECT_EQ(trained, 2);
  // Again: the finished runs resume at their last step and train nothing.
  std::ostringstream again;
  EXPECT_EQ(run_sweep_command(with_run, again, err), 1);
  EXPECT_NE(again.str().find("resumed from"), std::string::npos) << again.str();
  for (const fs::directory_entry& e : fs::directory_iterator(dir + "/runs"))
    if (fs::exists(e.path() / "metrics.jsonl")) EXPECT_EQ(read_metrics(e.path().string()).size(), 2u);
}

TEST(Train, RecipeErrorsExitWithStatus2) {
  std::ostringstream out, err;
  EXPECT_EQ(run_train_command({"/nonexistent/recipe.yaml"}, out, err), 2);
  EXPECT_NE(err.str().find("/nonexistent/recipe.yaml"), std::string::npos) << err.str();
  EXPECT_EQ(run_train_command({}, out, err), 2);
}

}  // namespace
}  // namespace rotor
