// Packing: samples tile each epoch's shuffled document stream, targets are the
// inputs shifted by one, document masking resets positions and numbers the
// segments, and the order is a pure function of (seed, index) so a resumed run
// sees the same samples.
#include <gtest/gtest.h>

#include <filesystem>
#include <algorithm>
#include <set>

#include "data/indexed_dataset.h"
#include "data/packing.h"

namespace rotor {
namespace {

// Documents d = 0..4 of length 3 + d; token values 100 * (d + 1) + k, the last
// of each document is the end-of-document marker 9.
IndexedDataset make_dataset(const std::string& name) {
  const std::string prefix = ::testing::TempDir() + "/" + name;
  auto w = IndexedDatasetWriter::create(prefix, TokenDType::kUint16);
  EXPECT_TRUE(w.ok()) << w.status();
  for (int d = 0; d < 5; ++d) {
    std::vector<int64_t> toks;
    for (int k = 0; k < 2 + d; ++k) toks.push_back(100 * (d + 1) + k);
    toks.push_back(9);
    // Split the document into two sequences to exercise multi-sequence documents.
    const size_t half = toks.size() / 2;
    EXPECT_TRUE(w->add_sequence(std::span<const int64_t>(toks.data(), half)).ok());
    EXPECT_TRUE(w->add_sequence(std::span<const int64_t>(toks.data() + half, toks.size() - half)).ok());
    w->end_document();
  }
  EXPECT_TRUE(w->finalize().ok());
  auto ds = IndexedDataset::open(prefix);
  EXPECT_TRUE(ds.ok()) << ds.status();
  return std::move(*ds);
}

TEST(Packing, SamplesTileTheEpochAndShiftTargets) {
  IndexedDataset ds = make_dataset("pack_tile");  // 3+4+5+6+7 = 25 tokens
  auto s = PackedSampler::create(&ds, {.sequence_length = 4, .seed = 1});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->samples_per_epoch(), 6);  // (25 - 1) / 4
  std::multiset<int32_t> seen;
  for (int64_t i = 0; i < 6; ++i) {
    auto x = s->sample(i);
    ASSERT_TRUE(x.ok()) << x.status();
    for (int t = 0; t + 1 < 4; ++t) EXPECT_EQ(x->targets[t], x->ids[t + 1]);
    for (int t = 0; t < 4; ++t) {
      EXPECT_EQ(x->positions[t], t);
      EXPECT_EQ(x->segments[t], 0);
    }
    seen.insert(x->ids.begin(), x->ids.end());
  }
  // The 24 inputs are the first 24 of the epoch's 25 stream tokens: no token
  // twice (every value but the marker 9 is unique), at most one left out.
  int64_t content = 0;
  for (int32_t v : std::set<int32_t>(seen.begin(), seen.end())) {
    if (v == 9) continue;
    EXPECT_EQ(seen.count(v), 1u) << "token " << v << " in two samples";
    ++content;
  }
  EXPECT_GE(content, 19) << "20 content tokens in the stream, only the last may be left out";
  EXPECT_GE(seen.count(9), 4u) << "end-of-document markers are inside the stream";
}

TEST(Packing, DocumentMaskingSegmentsPositionsAndTargets) {
  IndexedDataset ds = make_dataset("pack_mask");
  auto s = PackedSampler::create(&ds, {.sequence_length = 8, .seed = 3, .document_masking = true});
  ASSERT_TRUE(s.ok());
  for (int64_t i = 0; i < s->samples_per_epoch(); ++i) {
    auto x = s->sample(i);
    ASSERT_TRUE(x.ok());
    for (int t = 1; t < 8; ++t) {
      const bool new_doc = x->ids[t - 1] == 9;  // previous token ended a document
      EXPECT_EQ(x->segments[t], x->segments[t - 1] + (new_doc ? 1 : 0)) << "sample " << i;
      EXPECT_EQ(x->positions[t], new_doc ? 0 : x->positions[t - 1] + 1);
      if (new_doc) EXPECT_EQ(x->targets[t - 1], -1) << "no target across documents";
      else EXPECT_EQ(x->targets[t - 1], x->ids[t]);
    }
  }
}

TEST(Packing, DeterministicFromSeedAndIndexAcrossEpochs) {
  IndexedDataset ds = make_dataset("pack_det");
  auto a = PackedSampler::create(&ds, {.sequence_length = 4, .seed = 7});
  auto b = PackedSampler::create(&ds, {.sequence_length = 4, .seed = 7});
  auto c = PackedSampler::create(&ds, {.sequence_length = 4, .seed = 8});
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  // b starts at index 9 (as a resumed run would) and visits epochs out of order.
  std::vector<std::vector<int32_t>> from_a;
  for (int64_t i = 0; i < 14; ++i) from_a.push_back(a->sample(i)->ids);
  for (int64_t i : {9, 13, 2, 10, 0}) EXPECT_EQ(b->sample(i)->ids, from_a[i]) << i;
  bool differs = false;
  for (int64_t i = 0; i < 14; ++i) differs |= c->sample(i)->ids != from_a[i];
  EXPECT_TRUE(differs) << "another seed gives another order";
  bool epochs_differ = false;
  for (int64_t i = 0; i < 6; ++i) epochs_differ |= from_a[i] != from_a[i + 6];
  EXPECT_TRUE(epochs_differ) << "each epoch is reshuffled";
}

// shuffle = false (evaluation windows): sample j is stream tokens [4j, 4j + 5)
// of the documents in dataset order, whatever the seed.
TEST(Packing, UnshuffledSamplesFollowTheDataset) {
  IndexedDataset ds = make_dataset("pack_unshuffled");
  std::vector<int32_t> stream;
  for (int d = 0; d < 5; ++d) {
    for (int k = 0; k < 2 + d; ++k) stream.push_back(100 * (d + 1) + k);
    stream.push_back(9);
  }
  for (uint64_t seed : {0ull, 7ull}) {
    auto s = PackedSampler::create(&ds, {.sequence_length = 4, .seed = seed, .shuffle = false});
    ASSERT_TRUE(s.ok()) << s.status();
    for (int64_t j = 0; j < s->samples_per_epoch(); ++j) {
      auto x = s->sample(j);
      ASSERT_TRUE(x.ok()) << x.status();
      for (int t = 0; t < 4; ++t) {
        EXPECT_EQ(x->ids[t], stream[4 * j + t]) << "sample " << j;
        EXPECT_EQ(x->targets[t], stream[4 * j + t + 1]) << "sample " << j;
      }
    }
  }
}

// loss_on_last_sequence: a target counts only inside its document's last
// sequence (the second half here: offset >= (3 + d) / 2 of document d, whose
// token values say which document and offset they are; the eos 9 always
// counts), shuffled or not, with document masking or not; otherwise the
// targets are those of the sampler without it.
TEST(Packing, LossOnLastSequenceCountsOnlyTheLastSequence) {
  IndexedDataset ds = make_dataset("pack_last_sequence");
  EXPECT_EQ(ds.last_sequence_start(0), 1);  // 100 | 101 9
  EXPECT_EQ(ds.last_sequence_start(4), 3);  // 500 501 502 | 503 504 505 9
  for (bool shuffle : {false, true})
    for (bool masking : {false, true}) {
      auto plain = PackedSampler::create(&ds, {.sequence_length = 4, .seed = 3, .document_masking = masking,
                                               .shuffle = shuffle});
      auto last = PackedSampler::create(&ds, {.sequence_length = 4, .seed = 3, .document_masking = masking,
                                              .shuffle = shuffle, .loss_on_last_sequence = true});
      ASSERT_TRUE(plain.ok() && last.ok());
      int kept = 0, dropped = 0;
      for (int64_t j = 0; j < 2 * plain->samples_per_epoch(); ++j) {
        const PackedSample a = *plain->sample(j), b = *last->sample(j);
        EXPECT_EQ(a.ids, b.ids);
        EXPECT_EQ(a.positions, b.positions);
        for (int t = 0; t < 4; ++t) {
          const int32_t v = a.targets[t];
          const bool counts = v == 9 || (v > 0 && v % 100 >= (3 + v / 100 - 1) / 2);
          EXPECT_EQ(b.targets[t], counts ? v : -1) << "sample " << j << " target " << t << " (" << v << ")";
          (counts ? kept : dropped) += v >= 0;
        }
      }
      EXPECT_GT(kept, 0);
      EXPECT_GT(dropped, 0);
    }
}

// whole_documents: one document per sample from position 0, cut at L, padded
// (id 0, target -1, segment 1); every document once per epoch, in a seeded
// order; loss_on_last_sequence still applies.
TEST(Packing, WholeDocumentsOnePerSamplePadded) {
  IndexedDataset ds = make_dataset("pack_whole");  // documents of 3..7 tokens
  for (bool last : {false, true}) {
    auto s = PackedSampler::create(&ds, {.sequence_length = 5, .seed = 2, .document_masking = true,
                                         .loss_on_last_sequence = last, .whole_documents = true});
    ASSERT_TRUE(s.ok()) << s.status();
    ASSERT_EQ(s->samples_per_epoch(), 5);
    std::set<int> seen;
    for (int64_t j = 0; j < 5; ++j) {
      const PackedSample x = *s->sample(j);
      const int d = x.ids[0] / 100 - 1;  // the document, from its first token
      seen.insert(d);
      const int n = 3 + d;  // its tokens: 100(d+1)+k for k < 2+d, then 9
      std::vector<int32_t> doc;
      for (int k = 0; k < 2 + d; ++k) doc.push_back(100 * (d + 1) + k);
      doc.push_back(9);
      for (int t = 0; t < 5; ++t) {
        const bool real = t < n;
        EXPECT_EQ(x.ids[t], real ? doc[t] : 0) << "doc " << d << " t " << t;
        EXPECT_EQ(x.positions[t], real ? t : 0);
        EXPECT_EQ(x.segments[t], real ? 0 : 1);
        const bool counted = t + 1 < n && (!last || t + 1 >= n / 2);
        EXPECT_EQ(x.targets[t], counted ? doc[t + 1] : -1) << "doc " << d << " t " << t;
      }
    }
    EXPECT_EQ(seen.size(), 5u);
  }
}

TEST(Packing, TooFewTokensIsAnError) {
  IndexedDataset ds = make_dataset("pack_small");
  auto s = PackedSampler::create(&ds, {.sequence_length = 25, .seed = 1});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("cannot fill one sample"), std::string::npos) << s.status();
}

// Blocks of B = 2 L: the B / L samples of a block come one after another,
// the blocks in a shuffled order, and the first k blocks' samples at L tile
// the same tokens as their samples at B (so a length change goes on at a
// block boundary).
TEST(Packing, BlocksKeepTheirSamplesTogether) {
  IndexedDataset ds = make_dataset("pack_blocks");  // 25 tokens: 3 blocks of 8
  auto at4 = PackedSampler::create(&ds, {.sequence_length = 4, .seed = 3, .block_length = 8});
  auto at8 = PackedSampler::create(&ds, {.sequence_length = 8, .seed = 3});
  ASSERT_TRUE(at4.ok() && at8.ok());
  EXPECT_EQ(at4->samples_per_epoch(), 6);
  EXPECT_EQ(at8->samples_per_epoch(), 3);
  for (int64_t b = 0; b < 3; ++b) {
    const PackedSample whole = *at8->sample(b);
    const PackedSample first = *at4->sample(2 * b), second = *at4->sample(2 * b + 1);
    std::vector<int32_t> joined = first.ids;
    joined.insert(joined.end(), second.ids.begin(), second.ids.end());
    EXPECT_EQ(joined, whole.ids) << "block " << b;
  }
  auto bad = PackedSampler::create(&ds, {.sequence_length = 4, .seed = 3, .block_length = 6});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("not a multiple of the sequence length"), std::string::npos);
}

// PoSE (arXiv 2309.10400; its train_pose.py, 2023-10 revision): a piece of
// length l keeps positions 0..r1-1, r1 = randint(1, (l + 1) // 2), and the rest
// read t + u, u = randint(0, N - l) (both bounds inclusive). Checked on 4000
// samples: the shape exactly, and r1 and u spread uniformly over their
// ranges (mean within 3%, every eighth of the range within 15% of its
// expected count: 500 draws a bin, a standard deviation of ~21 = 4%).
TEST(Pose, PositionsFollowPosesDefinition) {
  const int64_t l = 128, n = 1024, samples = 4000;
  const std::vector<int32_t> one_piece(static_cast<size_t>(l), 0);
  std::vector<int64_t> r1_bins(8, 0), u_bins(8, 0);
  double r1_sum = 0, u_sum = 0;
  int64_t r1_min = l, r1_max = 0, u_min = n, u_max = -1;
  for (int64_t index = 0; index < samples; ++index) {
    std::vector<int32_t> pos(static_cast<size_t>(l));
    for (int64_t t = 0; t < l; ++t) pos[static_cast<size_t>(t)] = static_cast<int32_t>(t);
    pose_positions(pos, one_piece, l, n, /*seed=*/11, index);
    // r1: the first position that is not t (l when u = 0: r1 is then unseen).
    int64_t r1 = 0;
    while (r1 < l && pos[static_cast<size_t>(r1)] == r1) ++r1;
    if (r1 == l) continue;  // u = 0
    const int64_t u = pos[static_cast<size_t>(r1)] - r1;
    ASSERT_GE(r1, 1);
    ASSERT_LE(r1, (l + 1) / 2);
    ASSERT_GE(u, 1);
    ASSERT_LE(u, n - l);
    for (int64_t t = r1; t < l; ++t) ASSERT_EQ(pos[static_cast<size_t>(t)], t + u) << "index " << index;
    ASSERT_LT(pos.back(), n);
    r1_sum += static_cast<double>(r1);
    u_sum += static_cast<double>(u);
    r1_min = std::min(r1_min, r1), r1_max = std::max(r1_max, r1);
    u_min = std::min(u_min, u), u_max = std::max(u_max, u);
    ++r1_bins[static_cast<size_t>((r1 - 1) * 8 / ((l + 1) / 2))];
    ++u_bins[static_cast<size_t>(u * 8 / (n - l + 1))];
  }
  EXPECT_EQ(r1_min, 1);
  EXPECT_EQ(r1_max, (l + 1) / 2);
  EXPECT_LE(u_min, 3);
  EXPECT_GE(u_max, n - l - 3);
  EXPECT_NEAR(r1_sum / samples, (1.0 + (l + 1) / 2) / 2, 0.03 * 32.5);
  EXPECT_NEAR(u_sum / samples, (n - l) / 2.0, 0.03 * 448);
  for (int b = 0; b < 8; ++b) {
    EXPECT_NEAR(r1_bins[static_cast<size_t>(b)], samples / 8.0, 0.15 * samples / 8) << "r1 bin " << b;
    EXPECT_NEAR(u_bins[static_cast<size_t>(b)], samples / 8.0, 0.15 * samples / 8) << "u bin " << b;
  }
  // A pure function of (seed, index), different between samples.
  std::vector<int32_t> a(static_cast<size_t>(l), 0), b(static_cast<size_t>(l), 0), c(static_cast<size_t>(l), 0);
  pose_positions(a, one_piece, l, n, 11, 7);
  pose_positions(b, one_piece, l, n, 11, 7);
  pose_positions(c, one_piece, l, n, 11, 8);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
}

// With document masking each document's piece gets its own cut and skip; a
// one-token piece stays at 0; padding past `length` is left alone.
TEST(Pose, EachDocumentPieceIsSkippedOnItsOwn) {
  const std::vector<int32_t> segments = {0, 0, 0, 0, 0, 0, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3};
  std::vector<int32_t> pos = {0, 1, 2, 3, 4, 5, 0, 0, 1, 2, 3, 4, 5, 6, 7, 0, 0};
  pose_positions(pos, segments, 15, 64, 5, 3);
  EXPECT_EQ(pos[6], 0) << "a one-token piece";
  EXPECT_EQ(pos[15], 0);
  EXPECT_EQ(pos[16], 0) << "past length";
  for (const auto [begin, end] : {std::pair{0, 6}, std::pair{7, 15}}) {
    const int l = end - begin;
    int r1 = 0;
    while (r1 < l && pos[static_cast<size_t>(begin + r1)] == r1) ++r1;
    ASSERT_GE(r1, 1);
    ASSERT_LE(r1, std::max(1, (l + 1) / 2) + (r1 == l ? l : 0));
    for (int t = r1; t < l; ++t) {
      EXPECT_EQ(pos[static_cast<size_t>(begin + t)], t + pos[static_cast<size_t>(begin + r1)] - r1);
      EXPECT_LT(pos[static_cast<size_t>(begin + t)], 64);
    }
  }
}

// Through the sampler: the ids and targets are those without PoSE, the
// positions PoSE's (below N); whole documents keep their padding at 0; a
// target below the length is refused.
TEST(Pose, SamplerAppliesItToEverySample) {
  IndexedDataset ds = make_dataset("pack_pose");
  for (bool whole : {false, true}) {
    auto plain = PackedSampler::create(&ds, {.sequence_length = 6, .seed = 4, .document_masking = true,
                                             .whole_documents = whole});
    auto pose = PackedSampler::create(&ds, {.sequence_length = 6, .seed = 4, .document_masking = true,
                                            .whole_documents = whole, .pose_target_length = 40});
    ASSERT_TRUE(plain.ok() && pose.ok());
    bool skipped = false;
    for (int64_t i = 0; i < 8; ++i) {
      const PackedSample a = *plain->sample(i), b = *pose->sample(i);
      EXPECT_EQ(a.ids, b.ids);
      EXPECT_EQ(a.targets, b.targets);
      EXPECT_EQ(a.segments, b.segments);
      for (size_t t = 0; t < 6; ++t) {
        EXPECT_LT(b.positions[t], 40);
        EXPECT_GE(b.positions[t], a.positions[t]);
        if (a.segments[t] == 1 && whole) EXPECT_EQ(b.positions[t], 0) << "padding";
        skipped |= b.positions[t] != a.positions[t];
      }
      std::vector<int32_t> expected = a.positions;
      pose_positions(expected, a.segments, whole ? std::count(a.segments.begin(), a.segments.end(), 0) : 6, 40, 4, i);
      EXPECT_EQ(b.positions, expected) << "sample " << i;
    }
    EXPECT_TRUE(skipped);
  }
  auto bad = PackedSampler::create(&ds, {.sequence_length = 6, .seed = 4, .pose_target_length = 5});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), "data.pose_target_length (5) must be >= data.sequence_length (6)");
}

}  // namespace
}  // namespace rotor
