// Blending: exact proportions after every prefix, each dataset read in its
// own order without skips, and random access equal to sequential access.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "data/blend.h"
#include "data/indexed_dataset.h"

namespace rotor {
namespace {

// A dataset whose tokens all equal `tag` (so a sample names its dataset), in
// documents of 10 tokens.
IndexedDataset tagged_dataset(const std::string& name, int tag, int documents) {
  const std::string prefix = ::testing::TempDir() + "/" + name;
  auto w = IndexedDatasetWriter::create(prefix, TokenDType::kUint16);
  EXPECT_TRUE(w.ok()) << w.status();
  for (int d = 0; d < documents; ++d) {
    std::vector<int64_t> toks(10, tag);
    EXPECT_TRUE(w->add_sequence(toks).ok());
    w->end_document();
  }
  EXPECT_TRUE(w->finalize().ok());
  auto ds = IndexedDataset::open(prefix);
  EXPECT_TRUE(ds.ok()) << ds.status();
  return std::move(*ds);
}

TEST(Blend, ExactProportionsAndOwnOrder) {
  IndexedDataset a = tagged_dataset("blend_a", 1, 40), b = tagged_dataset("blend_b", 2, 40),
                 c = tagged_dataset("blend_c", 3, 40);
  std::vector<PackedSampler> samplers;
  for (const IndexedDataset* ds : {&a, &b, &c})
    samplers.push_back(*PackedSampler::create(ds, {.sequence_length = 8, .seed = 3}));
  const std::vector<double> weights = {5, 3, 2};  // normalised: 0.5, 0.3, 0.2
  auto blend = BlendedSampler::create(samplers, weights);
  ASSERT_TRUE(blend.ok()) << blend.status();
  std::map<int, int64_t> drawn;
  std::vector<std::pair<int, int64_t>> sequence;
  for (int64_t i = 0; i < 200; ++i) {
    const auto [d, number] = blend->source(i);
    EXPECT_EQ(number, drawn[d]) << "dataset " << d << " is read in order, without skips";
    ++drawn[d];
    sequence.emplace_back(d, number);
    for (int k = 0; k < 3; ++k)
      EXPECT_LT(std::abs(static_cast<double>(drawn[k]) - weights[k] / 10 * (i + 1)), 1.0 + 1e-9)
          << "after " << i + 1 << " samples, dataset " << k << " has " << drawn[k];
    // The sample's tokens come from that dataset.
    absl::StatusOr<PackedSample> s = blend->sample(i);
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_EQ(s->ids[0], d + 1);
  }
  EXPECT_EQ(drawn[0], 100);
  EXPECT_EQ(drawn[1], 60);
  EXPECT_EQ(drawn[2], 40);
  // Random access (a resumed run starts in the middle) gives the same answers.
  auto fresh = BlendedSampler::create(samplers, weights);
  for (int64_t i : {150, 7, 199, 0, 151}) EXPECT_EQ(fresh->source(i), sequence[i]) << i;
}

TEST(Blend, BadWeightsAreErrors) {
  IndexedDataset a = tagged_dataset("blend_err", 1, 4);
  std::vector<PackedSampler> one = {*PackedSampler::create(&a, {.sequence_length = 8})};
  EXPECT_FALSE(BlendedSampler::create({}, {}).ok());
  EXPECT_EQ(BlendedSampler::create(one, {1, 2}).status().message(), "blend: 2 weights for 1 datasets");
  EXPECT_EQ(BlendedSampler::create(one, {0}).status().message(),
            "blend: weight of dataset 0 must be > 0, got 0");
}

}  // namespace
}  // namespace rotor
