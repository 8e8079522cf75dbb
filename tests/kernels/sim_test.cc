// The checked stand-in device (kernels/sim.h): host access to a sim tensor
// outside an op aborts naming the caller; ops run on sim exactly as on the
// CPU; copies between host and sim and the allocator's misses are counted.
#include <gtest/gtest.h>

#include <vector>

#include "kernels/elementwise.h"
#include "kernels/matmul.h"
#include "kernels/random.h"
#include "kernels/reduce.h"
#include "kernels/sim.h"
#include "kernels/tensor.h"

namespace rotor {
namespace {

Tensor host_random(const Shape& shape, uint64_t seed) {
  Tensor t = Tensor::empty(shape, DType::kF32);
  fill_normal(t, seed, 0.0, 1.0);
  return t;
}

TEST(SimDeviceDeathTest, HostReadsAbortNamingTheCaller) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const Tensor t = Tensor::zeros({4}, DType::kF32, Device::sim());
  // The message names this file and the API; the line is the caller's.
  EXPECT_DEATH(t.data<float>(), "host access to a sim tensor \\(f32\\[4\\] sim\\) through raw\\(\\)/data\\(\\) at .*sim_test\\.cc");
  EXPECT_DEATH(t.item(0), "through item\\(\\) at .*sim_test\\.cc");
  EXPECT_DEATH(t.to_vector(), "through to_vector\\(\\) at .*sim_test\\.cc");
  // An op may not mix host and sim tensors (a GPU op given a host pointer).
  const Tensor host = Tensor::zeros({4}, DType::kF32);
  EXPECT_DEATH(add(t, host, t), "expected a sim tensor .*got f32\\[4\\] cpu");
}

TEST(SimDevice, OpsMatchTheCpuAndCopiesAreCounted) {
  const Tensor a = host_random({8, 16}, 1), b = host_random({16, 4}, 2);
  const Tensor c = Tensor::empty({8, 4}, DType::kF32);
  matmul(a, b, c);
  const SimStats before = sim_stats();
  const Tensor sa = a.to(Device::sim()), sb = b.to(Device::sim());
  const Tensor sc = Tensor::empty({8, 4}, DType::kF32, Device::sim());
  matmul(sa, sb, sc);
  Tensor acc = Tensor::zeros({1}, DType::kF64, Device::sim());
  sum_into(sc, acc);
  squared_norm_into(sc, acc, 2.0);
  const Tensor back = sc.to(Device::cpu());
  const double total = acc.to(Device::cpu()).item();
  const SimStats d = sim_stats().since(before);
  EXPECT_EQ(d.host_to_device_calls, 2);
  EXPECT_EQ(d.host_to_device_bytes, static_cast<int64_t>(a.nbytes() + b.nbytes()));
  EXPECT_EQ(d.device_to_host_calls, 2);
  EXPECT_EQ(d.device_to_host_bytes, static_cast<int64_t>(c.nbytes() + sizeof(double)));
  const std::vector<double> want = c.to_vector(), got = back.to_vector();
  double sum = 0, sq = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(got[i], want[i]) << i;  // the same CPU kernel: bit for bit
    sum += want[i];
    sq += want[i] * want[i];
  }
  ASSERT_GT(sq, 0.0) << "the reference must not be all zeros";
  EXPECT_NEAR(total, sum + sq / 2.0, 1e-9 * (std::abs(sum) + sq));
}

TEST(SimDevice, FreedBlocksAreReusedWithoutNewAllocations) {
  { Tensor warm = Tensor::empty({1000}, DType::kF32, Device::sim()); }
  const SimStats before = sim_stats();
  for (int i = 0; i < 10; ++i) {
    Tensor t = Tensor::empty({1000}, DType::kF32, Device::sim());  // the block freed above, again and again
    t.fill(1.5);
  }
  EXPECT_EQ(sim_stats().since(before).allocations, 0);
  Tensor big = Tensor::empty({1 << 20}, DType::kF32, Device::sim());  // no cached block fits
  EXPECT_EQ(sim_stats().since(before).allocations, 1);
  EXPECT_EQ(sim_stats().since(before).host_to_device_calls, 0) << "fill runs on the device";
}

}  // namespace
}  // namespace rotor
