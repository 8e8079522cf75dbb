// A tiny Llama memorises one fixed batch with AdamW: the loss must fall below
// a tenth of its starting value (about ln V for a fresh model). This catches
// sign errors and dead gradient paths that a gradient check on one tiny shape
// could miss, through the same model and optimizer the trainer uses.
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/random.h"
#include "model/llama.h"
#include "tests/common/tiny_config.h"
#include "trainer/optimizer.h"

namespace rotor {
namespace {

// On the cpu and on the checked stand-in device (kernels/sim.h), which must
// give the same numbers.
class Overfit : public ::testing::TestWithParam<DeviceType> {};

TEST_P(Overfit, TinyLlamaMemorisesOneBatch) {
  const LlamaConfig c = testing::small_config();
  LlamaOptions o;
  o.rope.theta = 10000;
  o.device = GetParam() == DeviceType::kSim ? Device::sim() : Device::cpu();
  auto model = LlamaModel::create(c, o);
  ASSERT_TRUE(model.ok()) << model.status();
  model->init_weights(1);

  const int64_t b = 2, t = 32;
  Tensor ids = Tensor::empty({b, t + 1}, DType::kI32);
  for (int64_t i = 0; i < ids.numel(); ++i)
    ids.data<int32_t>()[i] = static_cast<int32_t>(mix64(i) % c.vocab_size);
  Batch batch;
  batch.input_ids = Tensor::empty({b, t}, DType::kI32);
  batch.targets = Tensor::empty({b, t}, DType::kI32);
  for (int64_t r = 0; r < b; ++r)
    for (int64_t j = 0; j < t; ++j) {
      batch.input_ids.data<int32_t>()[r * t + j] = ids.data<int32_t>()[r * (t + 1) + j];
      batch.targets.data<int32_t>()[r * t + j] = ids.data<int32_t>()[r * (t + 1) + j + 1];
    }

  AdamWOptimizer opt(model->parameters(), AdamWHyper{.lr = 0, .beta1 = 0.9, .beta2 = 0.95,
                                                    .eps = 1e-8, .weight_decay = 0.0});
  double first = 0, last = 0;
  for (int step = 0; step < 150; ++step) {
    model->zero_grad();
    last = model->forward_backward(batch);
    if (step == 0) first = last;
    ASSERT_TRUE(std::isfinite(last)) << "step " << step;
    opt.step(model->parameters(), 1e-2, 1.0);
  }
  EXPECT_NEAR(first, std::log(64.0), 0.5) << "a fresh model predicts near-uniformly";
  EXPECT_LT(last, 0.1 * first) << "start " << first << ", after 150 steps " << last;
}

INSTANTIATE_TEST_SUITE_P(Devices, Overfit, ::testing::Values(DeviceType::kCpu, DeviceType::kSim),
                         [](const ::testing::TestParamInfo<DeviceType>& i) {
                           return i.param == DeviceType::kSim ? std::string("sim") : std::string("cpu");
                         });

}  // namespace
}  // namespace rotor
