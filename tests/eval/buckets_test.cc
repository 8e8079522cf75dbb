#include "eval/buckets.h"

#include <gtest/gtest.h>

namespace rotor::eval {
namespace {

TEST(PositionBuckets, DoublingFromTheFirstWidth) {
  const std::vector<PositionBucket> b = position_buckets(5000);
  ASSERT_EQ(b.size(), 4u);
  EXPECT_EQ(b[0].label, "0-1K");
  EXPECT_EQ(b[1].label, "1K-2K");
  EXPECT_EQ(b[2].label, "2K-4K");
  EXPECT_EQ(b[3].label, "4K-8K");
  EXPECT_EQ(b[3].begin, 4096);
  EXPECT_EQ(b[3].end, 5000);  // cut at the length
  const std::vector<PositionBucket> s = position_buckets(256, 64);
  ASSERT_EQ(s.size(), 3u);
  EXPECT_EQ(s[0].label, "0-64");
  EXPECT_EQ(s[2].label, "128-256");
  EXPECT_TRUE(position_buckets(0).empty());
}

TEST(PositionBuckets, IndexAgreesWithTheRanges) {
  for (int64_t w : {1, 3, 64, 1024}) {
    const std::vector<PositionBucket> b = position_buckets(20 * w + 7, w);
    for (size_t i = 0; i < b.size(); ++i)
      for (int64_t p : {b[i].begin, b[i].end - 1}) EXPECT_EQ(bucket_index(p, w), static_cast<int>(i)) << w << " " << p;
  }
}

}  // namespace
}  // namespace rotor::eval
