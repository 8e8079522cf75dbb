// Tagged memory accounting (kernels/memory.h): allocations take the tag of
// the innermost scope, retagging moves bytes between tags, offloaded bytes are
// never part of a device's total, and the peak keeps its breakdown. Uses the
// sim device's ledger, which nothing else in this binary's tests touches
// while a test runs (tests run one at a time).
#include <gtest/gtest.h>

#include "kernels/memory.h"
#include "kernels/tensor.h"

namespace rotor {
namespace {

int64_t f32_bytes(int64_t n) { return n * 4; }

TEST(MemoryLedger, TagsScopesRetagPeakAndRelease) {
  const Device sim = Device::sim();
  const MemoryUsage before = memory_usage(sim);
  reset_memory_peak(sim);
  const int64_t base = before.device_total();
  {
    Tensor w;
    {
      MemoryTagScope outer(MemoryTag::kParameters);
      w = Tensor::empty({100}, DType::kF32, sim);
      {
        MemoryTagScope inner(MemoryTag::kOptimizer);
        EXPECT_EQ(current_memory_tag(), MemoryTag::kOptimizer);
      }
      EXPECT_EQ(current_memory_tag(), MemoryTag::kParameters);
    }
    EXPECT_EQ(current_memory_tag(), MemoryTag::kTransient);
    EXPECT_EQ(memory_tag(w), MemoryTag::kParameters);
    Tensor a = Tensor::empty({50}, DType::kBF16, sim);  // transient, 100 bytes
    MemoryUsage u = memory_usage(sim);
    EXPECT_EQ(u[MemoryTag::kParameters] - before[MemoryTag::kParameters], f32_bytes(100));
    EXPECT_EQ(u[MemoryTag::kTransient] - before[MemoryTag::kTransient], 100);
    // Retagging a view moves the whole storage; the total stays.
    set_memory_tag(a.narrow(0, 10), MemoryTag::kActivations);
    u = memory_usage(sim);
    EXPECT_EQ(u[MemoryTag::kTransient], before[MemoryTag::kTransient]);
    EXPECT_EQ(u[MemoryTag::kActivations] - before[MemoryTag::kActivations], 100);
    EXPECT_EQ(u.device_total(), base + 500);
    // Offloaded bytes leave the device total (and the peak).
    set_memory_tag(a, MemoryTag::kOffloaded);
    u = memory_usage(sim);
    EXPECT_EQ(u.device_total(), base + 400);
    EXPECT_EQ(u[MemoryTag::kOffloaded] - before[MemoryTag::kOffloaded], 100);
    EXPECT_EQ(u.high_of(MemoryTag::kOffloaded) - before[MemoryTag::kOffloaded], 100);
    EXPECT_EQ(u.peak, base + 500);
    EXPECT_EQ(u.peak_of(MemoryTag::kParameters) - before[MemoryTag::kParameters], f32_bytes(100));
    // A wrapped view of memory rotor did not allocate is not counted.
    float outside[8];
    Tensor wrapped = Tensor::wrap(outside, {8}, DType::kF32, sim);
    set_memory_tag(wrapped, MemoryTag::kGradients);
    EXPECT_EQ(memory_usage(sim)[MemoryTag::kGradients], before[MemoryTag::kGradients]);
  }
  // Freed: every tag back where it was, the peak kept.
  const MemoryUsage after = memory_usage(sim);
  for (int i = 0; i < kMemoryTags; ++i) EXPECT_EQ(after.current[i], before.current[i]) << memory_tag_name(MemoryTag(i));
  EXPECT_EQ(after.peak, base + 500);
  EXPECT_NE(after.peak_summary().find("parameters 0.0 MB"), std::string::npos) << after.peak_summary();
  reset_memory_peak(sim);
  EXPECT_EQ(memory_usage(sim).peak, base);
}

// Each device has its own ledger: a CPU allocation does not move sim's.
TEST(MemoryLedger, DevicesAreCountedApart) {
  const int64_t sim_before = memory_usage(Device::sim()).device_total();
  const int64_t cpu_before = memory_usage(Device::cpu()).device_total();
  Tensor t = Tensor::empty({1000}, DType::kF64);
  EXPECT_EQ(memory_usage(Device::cpu()).device_total() - cpu_before, 8000);
  EXPECT_EQ(memory_usage(Device::sim()).device_total(), sim_before);
}

}  // namespace
}  // namespace rotor
