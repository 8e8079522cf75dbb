// What a training step asks of the device, measured on the checked stand-in
// device (kernels/sim.h), where every host <-> device copy and every
// allocation the caching allocator cannot serve from its cache is counted:
//   - device -> host: one read per step (loss sum and squared gradient norms,
//     together), nothing else;
//   - host -> device: the micro-batches' bytes (ids, targets, positions,
//     document ids), uploaded once each, nothing else;
//   - allocations: none after the first step (every buffer a step needs is a
//     block the first step freed).
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/random.h"
#include "kernels/sim.h"
#include "model/llama.h"
#include "tests/common/tiny_config.h"
#include "trainer/train_step.h"

namespace rotor {
namespace {

Batch host_batch(int64_t b, int64_t t, int64_t vocab, uint64_t seed) {
  Batch batch;
  batch.input_ids = Tensor::empty({b, t}, DType::kI32);
  batch.targets = Tensor::empty({b, t}, DType::kI32);
  batch.positions = Tensor::empty({b, t}, DType::kI32);
  batch.segments = Tensor::empty({b, t}, DType::kI32);
  for (int64_t i = 0; i < b * t; ++i) {
    batch.input_ids.data<int32_t>()[i] = static_cast<int32_t>(mix64(seed + 2 * i) % vocab);
    batch.targets.data<int32_t>()[i] = i % 7 == 3 ? -1 : static_cast<int32_t>(mix64(seed + 2 * i + 1) % vocab);
    batch.positions.data<int32_t>()[i] = static_cast<int32_t>(i % t % 20);  // documents of 20 tokens
    batch.segments.data<int32_t>()[i] = static_cast<int32_t>(i % t / 20);
  }
  return batch;
}

int64_t batch_bytes(const Batch& b) {
  return static_cast<int64_t>(b.input_ids.nbytes() + b.targets.nbytes() + b.positions.nbytes() +
                              b.segments.nbytes());
}

TEST(SimStep, OneReadNoAllocationAndOnlyTheBatchUploadedPerStep) {
  const LlamaConfig c = testing::small_config();
  LlamaOptions o;
  o.rope.theta = 10000;
  o.logit_scale.kind = LogitScaleKind::kLogPosition;  // the per-token query table, made on the device
  o.logit_scale.base_length = 8;
  o.device = Device::sim();
  absl::StatusOr<LlamaModel> model = LlamaModel::create(c, o);
  ASSERT_TRUE(model.ok()) << model.status();
  model->init_weights(3);
  TrainStepSettings settings;
  settings.hyper.lr = 1e-2;
  settings.grad_clip = 1.0;
  TrainStep step(*model, settings);

  double first_loss = 0;
  for (int64_t s = 1; s <= 4; ++s) {
    const std::vector<Batch> micro = {host_batch(2, 48, c.vocab_size, 100 * s),
                                      host_batch(2, 48, c.vocab_size, 100 * s + 50)};
    const SimStats before = sim_stats();
    absl::StatusOr<TrainStepResult> r = step.step(s, micro);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_TRUE(r->applied()) << r->nonfinite;
    ASSERT_TRUE(std::isfinite(r->loss.mean()) && r->loss.mean() > 0);
    ASSERT_GT(r->grad_norm, 0.0);
    if (s == 1) first_loss = r->loss.mean();
    const SimStats d = sim_stats().since(before);
    EXPECT_EQ(d.device_to_host_calls, 1) << "step " << s << ": the end-of-step read only";
    EXPECT_EQ(d.device_to_host_bytes, 3 * 8) << "step " << s << ": loss sum and two squared norms (f64)";
    if (s > 1) {
      EXPECT_EQ(d.host_to_device_bytes, batch_bytes(micro[0]) + batch_bytes(micro[1])) << "step " << s;
      EXPECT_EQ(d.host_to_device_calls, 8) << "step " << s << ": four tensors per micro-batch";
      EXPECT_EQ(d.allocations, 0) << "step " << s;
    }
  }
  EXPECT_NE(first_loss, 0.0);
}

// The same steps on cpu and on sim: bit for bit the same losses and norms.
TEST(SimStep, SameNumbersAsTheCpu) {
  const LlamaConfig c = testing::small_config();
  std::vector<double> losses[2], norms[2];
  for (int d = 0; d < 2; ++d) {
    LlamaOptions o;
    o.rope.theta = 10000;
    o.device = d == 0 ? Device::cpu() : Device::sim();
    absl::StatusOr<LlamaModel> model = LlamaModel::create(c, o);
    ASSERT_TRUE(model.ok()) << model.status();
    model->init_weights(3);
    TrainStepSettings settings;
    settings.hyper.lr = 1e-2;
    TrainStep step(*model, settings);
    for (int64_t s = 1; s <= 3; ++s) {
      absl::StatusOr<TrainStepResult> r = step.step(s, {host_batch(2, 48, c.vocab_size, 7 * s)});
      ASSERT_TRUE(r.ok()) << r.status();
      losses[d].push_back(r->loss.mean());
      norms[d].push_back(r->grad_norm);
    }
  }
  ASSERT_TRUE(std::isfinite(losses[0][0]) && losses[0][0] > 0);
  EXPECT_EQ(losses[0], losses[1]);
  EXPECT_EQ(norms[0], norms[1]);
}

}  // namespace
}  // namespace rotor
