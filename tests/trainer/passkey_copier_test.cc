// Passkey scoring on a model that is trained to copy finds the key.
//
// The test trains a tiny Llama with the shipped training step
// (trainer/train_step.h's TrainStep: zero_grad, forward_backward over the
// micro-batches, gradient reduction, global-norm clipping, AdamW with the
// learning rate of trainer/schedule.h's LrSchedule) to answer passkey
// prompts, then scores it with the shipped evaluation path: passkey_prompt
// builds the prompts, greedy_answerer decodes with the KV cache
// (model/decode.h) and run_retrieval_grid scores a 3 lengths x 3 depths x 4
// keys grid. The untrained (init) model must score 0 and the trained one at
// least 0.8, so the test fails when any link of the path (training step,
// prompt layout, decoding, answer scoring) breaks.
//
// Design, and what made it learnable in a CI budget:
// - Tokenizer: a 200-piece BPE SentencePiece model trained here, on the
//   passkey texts with random keys (--split_digits: one digit per piece), and
//   loaded with make_tokenizer("spm:PATH"), so this also covers the
//   SentencePiece retrieval path. Words are single pieces, so a prompt needs
//   only 64 tokens of fixed text (bytes: 244) and the answer is "_" + 5 digits.
// - Model: 2 layers, hidden 64, 4 heads of 16, SwiGLU 128, plain RoPE, f32.
//   Copying needs an induction circuit; keys often repeat a digit, so copying
//   "the token after my previous digit" is ambiguous and the model must also
//   use the digit before (or its position), which appears in a late phase
//   change (around step 700 here).
// - Data: prompts from passkey_prompt of 66..84 tokens, random depth and key,
//   followed by the answer " NNNNN." and eos; loss only on copyable tokens
//   (see passkey_batch). Short prompts: the filler teaches nothing.
// - AdamW lr 3e-3 (betas 0.9, 0.98, no weight decay), warmup 100 steps,
//   cosine to 3e-4, clip 1, batch 24 (one micro-batch), 1000 steps; one
//   OpenMP thread (see OneThread).
// Measured on the 2-core dev box, grid lengths 72/78/84 x depths 0/0.5/1 x 4
// keys: seed 1 (the one fixed here) loss 0.0002 nats per copied token, 36/36;
// seeds 2 and 3 (tried, then dropped) loss 0.0000 and 0.0025, 36/36 each; the
// init model 0/36 for every seed. Cheaper runs were not reliable: 800 steps
// scored 0.833, 0.972, 0.722 (seeds 1, 2, 3); batch 16 (prompts up to 96)
// 0.639, 0.778, 1.0; prompts up to 96 with batch 24 scored 36, 35, 32 of 36.
// Time (2-core dev box, one thread): 39.7 s alone (40 to 48 s over other
// runs); 39.2 and 41.3 s for two copies at once; 40.4 s beside a -j1 build;
// 48 s beside another engineer's build (prompts up to 96). With OpenMP's
// default two threads the same training took 3.5x longer under contention.
#include <gtest/gtest.h>
#include <omp.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "data/tokenizer.h"
#include "eval/retrieval.h"
#include "model/llama.h"
#include "trainer/train_step.h"

namespace rotor {
namespace {

namespace fs = std::filesystem;

// The run (see the header comment for why these values).
struct CopierSetup {
  uint64_t seed = 1;         // tokenizer corpus, init, training batches
  int64_t vocab = 200;       // BPE pieces: whole words, one digit per token
  int64_t min_length = 66;   // prompt tokens (instruction + sentence + question take 64)
  int64_t max_length = 84;
  int64_t batch = 24;
  int64_t steps = 1000;
  double lr = 3e-3;          // peak; 1e-2 did not learn, 5e-3 learnt slower
};

// A BPE SentencePiece model trained on the passkey texts themselves, so the
// fixed text is a few dozen word pieces and every digit is its own piece
// (--split_digits). Returns "spm:PATH". Trained by spm_train (Debian package
// sentencepiece, installed by launch/setup): SentencePiece's trainer library
// cannot be linked into a binary that links the system libprotobuf (see
// data/tokenizer.cc).
std::string train_passkey_tokenizer(const fs::path& dir, uint64_t seed, int64_t vocab) {
  fs::create_directories(dir);
  const fs::path corpus = dir / "corpus.txt";
  {
    std::ofstream out(corpus);
    std::mt19937_64 rng(seed);
    for (int i = 0; i < 200; ++i) {
      const std::string key = std::to_string(10000 + rng() % 90000);
      out << kPasskeyInstruction << "\n" << kPasskeyFiller << "\n"
          << "The pass key is " << key << ". Remember it. " << key << " is the pass key. \n"
          << kPasskeyQuestion << " " << key << ".\n";
    }
  }
  const fs::path prefix = dir / "passkey";
  const std::string command = "spm_train --input=" + corpus.string() + " --model_prefix=" + prefix.string() +
                              " --vocab_size=" + std::to_string(vocab) +
                              " --model_type=bpe --split_digits=true --hard_vocab_limit=false"
                              " --num_threads=1 --minloglevel=2 > " + (dir / "spm_train.log").string() + " 2>&1";
  EXPECT_EQ(std::system("command -v spm_train >/dev/null 2>&1"), 0)
      << "spm_train not found (Debian package sentencepiece, see launch/setup)";
  EXPECT_EQ(std::system(command.c_str()), 0) << command;
  return "spm:" + (prefix.string() + ".model");
}

// One batch of training rows: a passkey prompt (passkey_prompt, as the grid
// builds them) of random length in [min_length, max_length], depth and key,
// then the answer " NNNNN." and eos, padded to [batch, max_length + 8].
// Only copyable tokens are targets: the key's second occurrence in the
// sentence ("... Remember it. NNNNN is ...") and the answer with its "." and
// eos. (Loss on every token but the random first digits reached 0.25 nats
// per token and 0 keys after 300 steps: the filler dominates the gradient.)
Batch passkey_batch(const Tokenizer& tok, const CopierSetup& s, std::mt19937_64& rng) {
  const int64_t answer_len = static_cast<int64_t>(tok.encode(" 12345.")->size()) + 1;
  const int64_t T = s.max_length + answer_len;
  Tensor ids = Tensor::zeros({s.batch, T}, DType::kI32);
  Tensor targets = Tensor::zeros({s.batch, T}, DType::kI32);
  int32_t* in = ids.data<int32_t>();
  int32_t* tg = targets.data<int32_t>();
  for (int64_t b = 0; b < s.batch; ++b) {
    const int64_t length = s.min_length + static_cast<int64_t>(rng() % (s.max_length - s.min_length + 1));
    const double depth = static_cast<double>(rng() % 1001) / 1000.0;
    const int64_t key = 10000 + static_cast<int64_t>(rng() % 90000);
    absl::StatusOr<RetrievalPrompt> p = passkey_prompt(tok, length, depth, key);
    EXPECT_TRUE(p.ok()) << p.status();
    std::vector<int32_t> row = p->ids;
    const std::vector<int32_t> answer = *tok.encode(" " + p->expected + ".");
    row.insert(row.end(), answer.begin(), answer.end());
    row.push_back(tok.eos_id());
    const int64_t second_digits_end =
        p->insert_at + static_cast<int64_t>(
                           tok.encode("The pass key is " + p->expected + ". Remember it. " + p->expected)->size());
    for (int64_t t = 0; t < T; ++t) {
      in[b * T + t] = t < static_cast<int64_t>(row.size()) ? row[static_cast<size_t>(t)] : 0;
      const int64_t next = t + 1;
      // Copyable: the key's second occurrence in the sentence and the answer.
      const bool copy = (next >= second_digits_end - 5 && next < second_digits_end) ||
                        next >= static_cast<int64_t>(p->ids.size());
      tg[b * T + t] = next < static_cast<int64_t>(row.size()) && copy
                          ? row[static_cast<size_t>(next)]
                          : -1;
    }
  }
  return Batch{.input_ids = ids, .targets = targets};
}

LlamaConfig copier_config(int64_t vocab) {
  LlamaConfig c;
  c.vocab_size = vocab;
  c.hidden_size = 64;
  c.intermediate_size = 128;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = c.num_attention_heads;
  c.max_position_embeddings = 256;
  return c;
}

// The optimizer and schedule of the run: AdamW with linear warmup over 10%
// of the steps, cosine decay to 10% of the peak and global-norm clipping at 1.
TrainStepSettings copier_settings(const CopierSetup& s) {
  return {.hyper = {.lr = s.lr, .beta1 = 0.9, .beta2 = 0.98, .eps = 1e-8, .weight_decay = 0.0},
          .grad_clip = 1.0,
          .schedule = {.lr = s.lr,
                       .min_lr = s.lr / 10,
                       .warmup_steps = s.steps / 10,
                       .steps = s.steps,
                       .shape = LrSchedule::Shape::kCosine}};
}

// Trains through TrainStep, one micro-batch of s.batch rows per step. Returns
// the mean loss (nats per copied token) of the last 20 steps.
double train_copier(LlamaModel& model, const Tokenizer& tok, const CopierSetup& s) {
  TrainStep trainer(model, copier_settings(s));
  std::mt19937_64 rng(s.seed * 7919 + 17);
  double tail_loss = 0;
  int64_t skipped = 0;
  for (int64_t step = 1; step <= s.steps; ++step) {
    const absl::StatusOr<TrainStepResult> r = trainer.step(step, {passkey_batch(tok, s, rng)});
    if (!r.ok()) {
      ADD_FAILURE() << r.status();
      return std::nan("");
    }
    skipped += !r->applied();
    if (step > s.steps - 20) tail_loss += r->loss.mean() / 20;
  }
  EXPECT_EQ(skipped, 0) << "steps not applied (non-finite loss or gradient)";
  return tail_loss;
}

double pass_rate(const std::vector<RetrievalCell>& cells) {
  int64_t passed = 0, trials = 0;
  for (const RetrievalCell& c : cells) {
    passed += c.passed;
    trials += c.trials;
  }
  return static_cast<double>(passed) / static_cast<double>(trials);
}

// One OpenMP thread (OpenBLAS's OpenMP variant follows it) for the test's
// duration: the matmuls are tiny, and with more runnable threads than cores
// (a parallel build or ctest -j beside it) the team's spinning made training
// 3.5x slower (measured: 200 steps 9.6 s with one thread, 33.9 s with two).
class OneThread {
 public:
  OneThread() : saved_(omp_get_max_threads()) { omp_set_num_threads(1); }
  ~OneThread() { omp_set_num_threads(saved_); }

 private:
  int saved_;
};

TEST(PasskeyCopier, TrainedModelFindsTheKeyAndTheInitModelDoesNot) {
  const OneThread one_thread;
  const auto start = std::chrono::steady_clock::now();
  CopierSetup s;
  const fs::path dir =
      fs::path(testing::TempDir()) / ("passkey_copier_" + std::to_string(getpid()));
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok =
      make_tokenizer(train_passkey_tokenizer(dir, s.seed, s.vocab));
  ASSERT_TRUE(tok.ok()) << tok.status();
  // Each digit is its own piece, so the model copies one digit per step.
  ASSERT_EQ((*tok)->encode(" 48213.")->size(), 7u);

  absl::StatusOr<LlamaModel> model = LlamaModel::create(copier_config((*tok)->vocab_size()), {});
  ASSERT_TRUE(model.ok()) << model.status();
  model->init_weights(s.seed);

  absl::StatusOr<Answerer> answer = greedy_answerer(*model, (*tok)->eos_id());
  ASSERT_TRUE(answer.ok()) << answer.status();
  // 3 lengths x 3 depths x 4 keys, all within the trained lengths.
  const RetrievalOptions grid{
      .lengths = {72, 78, s.max_length}, .depths = {0, 0.5, 1}, .trials = 4, .seed = 77};
  absl::StatusOr<std::vector<RetrievalCell>> before =
      run_retrieval_grid(RetrievalKind::kPasskey, **tok, *answer, grid);
  ASSERT_TRUE(before.ok()) << before.status();

  const auto t0 = std::chrono::steady_clock::now();
  const double loss = train_copier(*model, **tok, s);
  const auto t1 = std::chrono::steady_clock::now();

  absl::StatusOr<std::vector<RetrievalCell>> after =
      run_retrieval_grid(RetrievalKind::kPasskey, **tok, *answer, grid);
  ASSERT_TRUE(after.ok()) << after.status();
  const auto end = std::chrono::steady_clock::now();
  auto secs = [](auto a, auto b) { return std::chrono::duration<double>(b - a).count(); };
  std::fprintf(stderr, "seed %lu: loss %.4f, pass rate init %.3f trained %.3f; train %.1f s, total %.1f s\n",
               static_cast<unsigned long>(s.seed), loss, pass_rate(*before), pass_rate(*after),
               secs(t0, t1), secs(start, end));
  for (const RetrievalCell& c : *after)
    std::fprintf(stderr, "  length %ld depth %.2f: %ld/%ld\n", static_cast<long>(c.length), c.depth,
                 static_cast<long>(c.passed), static_cast<long>(c.trials));
  // A chance 5-digit match is 1e-5 per trial: the init model finds no key.
  EXPECT_EQ(pass_rate(*before), 0.0);
  // Seeds 1, 2, 3 scored 36/36 each; 0.8 (29 of 36) tolerates a few keys lost to
  // a different BLAS or compiler changing the rounding of the training run,
  // while a broken prompt, decoder or scorer drops the rate to ~0.
  EXPECT_GE(pass_rate(*after), 0.8);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace rotor
