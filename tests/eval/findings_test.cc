// The five findings of eval/findings.h on hand-made eval tables: a set of
// runs that reproduces each, the same with the deciding numbers flipped (not
// reproduced), and tables missing what a finding needs (not measured, with
// the reason); Spearman's rho on known values.
#include "eval/findings.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

namespace rotor::eval {
namespace {

// ppl.csv rows (bucket all) of `run` trained at `train`: length -> ppl.
void add_ppl(EvalTables& t, const std::string& run, int train, std::vector<std::pair<int, double>> ppl) {
  for (const auto& [length, p] : ppl)
    t.merged["ppl.csv"].push_back({run, "10", absl::StrCat(train), absl::StrCat(length), "all", "4", "512",
                                   absl::StrCat(std::log(p)), absl::StrCat(p)});
}

void add_attention(EvalTables& t, const std::string& run, double entropy, double js) {
  for (int layer = 0; layer < 2; ++layer) {
    t.merged["attention.csv"].push_back({run, "10", "512", absl::StrCat(layer), "-1", "all", "entropy",
                                         absl::StrCat(entropy), ""});
    if (js >= 0)
      t.merged["attention.csv"].push_back({run, "10", "512", absl::StrCat(layer), "-1", "all", "js_divergence",
                                           absl::StrCat(js), "base"});
  }
}

// A passkey cell: (length, depth) with a pass rate and entropy.
void add_cell(EvalTables& t, const std::string& run, int length, double depth, double rate, double entropy) {
  t.merged["passkey.csv"].push_back({run, "10", absl::StrCat(length), absl::StrCat(depth), "4",
                                     absl::StrCat(static_cast<int>(rate * 4)), absl::StrCat(rate), absl::StrCat(entropy)});
}

std::vector<RunInfo> infos() {
  return {{"base", "none theta=10000", "none", 128, false},   {"direct", "none theta=10000", "none", 512, true},
          {"pi", "linear theta=10000 factor=4", "none", 512, true}, {"abf", "none theta=500000", "none", 512, true},
          {"eabf", "none theta=500000", "log_position", 512, true}, {"abf256", "none theta=500000", "none", 256, true}};
}

// Every finding holds; `flip` turns the deciding numbers of one finding around.
EvalTables tables(int flip = 0) {
  EvalTables t;
  add_ppl(t, "base", 128, {{128, 10}, {512, 10.5}, {1024, flip == 1 ? 10.6 : 14}});
  add_ppl(t, "direct", 512, {{128, 10}, {512, 8}, {1024, 8.2}});
  add_ppl(t, "pi", 512, {{128, 11}, {512, 9}, {1024, flip == 2 ? 8.0 : 9.5}});
  add_ppl(t, "abf", 512, {{128, 10}, {512, 7.9}, {1024, 7.95}});
  add_ppl(t, "eabf", 512, {{128, 10}, {512, 7.9}, {1024, flip == 5 ? 8.1 : 7.90}});
  add_ppl(t, "abf256", 256, {{128, 10}, {512, 8.5}, {1024, 9}});
  add_attention(t, "base", 2.0, -1);
  add_attention(t, "direct", 1.5, 0.12);
  add_attention(t, "pi", 1.8, 0.27);
  add_attention(t, "abf", 1.4, 0.17);
  add_attention(t, "eabf", 1.3, 0.18);
  add_attention(t, "abf256", flip == 4 ? 1.2 : 1.6, 0.15);
  // Retrieval: pass rates fall as entropy rises (flip 3: they rise with it).
  const char* runs[] = {"base", "direct", "pi", "abf", "eabf", "abf256"};
  for (int r = 0; r < 6; ++r)
    for (int i = 0; i < 4; ++i) {
      const double entropy = 1.0 + 0.1 * r + 0.02 * i;
      double rate = 1.0 - 0.15 * r - 0.03 * i;
      if (flip == 3) rate = 0.1 + 0.15 * r;
      if (std::string(runs[r]) == "abf") rate = 0.9;  // above abf256 (0.25): finding 4
      add_cell(t, runs[r], 256 * (1 + i % 2), 0.5 * (i / 2), rate, entropy);
    }
  summarize(t);
  return t;
}

TEST(Findings, AllReproducedOnRunsThatShowThem) {
  const std::vector<Finding> f = assess_findings(tables(), infos());
  ASSERT_EQ(f.size(), 5u);
  for (const Finding& x : f) EXPECT_EQ(x.verdict, Verdict::kReproduced) << x.number << ": " << x.summary << "\n" << x.evidence;
  EXPECT_NE(f[0].summary.find("base ppl 10.000 at 128, 14.000 at 1K (x1.40); 4 of 4 extension runs hold to 512"),
            std::string::npos) << f[0].summary;
  EXPECT_NE(f[1].summary.find("largest JS: pi (0.2700); worst ppl@1K: pi (9.500)"), std::string::npos) << f[1].summary;
  EXPECT_NE(f[2].summary.find("over 24 cells"), std::string::npos) << f[2].summary;
  EXPECT_NE(f[3].summary.find("256 -> 512: entropy 1.6000 -> 1.4000"), std::string::npos) << f[3].summary;
  EXPECT_NE(f[4].summary.find("lowest ppl@1K: eabf (7.900)"), std::string::npos) << f[4].summary;
  const std::string md = findings_markdown(f);
  EXPECT_NE(md.find("| 5 | Entropy-aware ABF extrapolates best at 2x its training length | **reproduced** |"),
            std::string::npos) << md;
}

TEST(Findings, EachFlippedFindingIsNotReproduced) {
  for (int flip = 1; flip <= 5; ++flip) {
    const std::vector<Finding> f = assess_findings(tables(flip), infos());
    for (const Finding& x : f)
      EXPECT_EQ(x.verdict, x.number == flip ? Verdict::kNotReproduced : Verdict::kReproduced)
          << "flip " << flip << ", finding " << x.number << ": " << x.summary;
  }
}

TEST(Findings, MissingInputsAreNotMeasuredWithTheReason) {
  // No ablation run, no attention, every pass rate the same.
  EvalTables t;
  add_ppl(t, "base", 128, {{128, 10}, {1024, 14}});
  add_ppl(t, "direct", 512, {{128, 10}, {512, 8}, {1024, 8}});
  add_ppl(t, "eabf", 512, {{128, 10}, {512, 8}, {1024, 8}});
  for (int i = 0; i < 4; ++i) add_cell(t, "direct", 256, 0.25 * i, 0.0, 1.0 + i);
  summarize(t);
  std::vector<RunInfo> runs = {infos()[0], infos()[1], infos()[4]};
  const std::vector<Finding> f = assess_findings(t, runs);
  EXPECT_EQ(f[0].verdict, Verdict::kNotMeasured) << f[0].summary;  // no base ppl at 512
  EXPECT_NE(f[0].summary.find("no ppl of the base run at 128 and 512"), std::string::npos) << f[0].summary;
  EXPECT_EQ(f[1].verdict, Verdict::kNotMeasured);
  EXPECT_NE(f[1].summary.find("no JS divergence of direct"), std::string::npos) << f[1].summary;
  EXPECT_EQ(f[2].verdict, Verdict::kNotMeasured);
  EXPECT_NE(f[2].summary.find("the pass rate is the same in all 4 cells"), std::string::npos) << f[2].summary;
  EXPECT_EQ(f[3].verdict, Verdict::kNotMeasured);
  EXPECT_NE(f[3].summary.find("no method continued at two lengths"), std::string::npos) << f[3].summary;
  EXPECT_EQ(f[4].verdict, Verdict::kReproduced) << f[4].summary;  // eabf ties direct at 1K: a tie counts as lowest
  runs.pop_back();
  EXPECT_NE(assess_findings(t, runs)[4].summary.find("0 extension runs with an attention-logit scale"), std::string::npos);
  EXPECT_NE(assess_findings(t, {})[0].summary.find("no base run"), std::string::npos);
}

TEST(Findings, SpearmanRho) {
  EXPECT_DOUBLE_EQ(spearman({1, 2, 3, 4}, {10, 20, 30, 40}), 1.0);
  EXPECT_DOUBLE_EQ(spearman({1, 2, 3, 4}, {4, 3, 2, 1}), -1.0);
  EXPECT_NEAR(spearman({1, 2, 2, 3}, {1, 2, 3, 4}), 4.5 / std::sqrt(22.5), 1e-12);  // average ranks for the tie
  EXPECT_TRUE(std::isnan(spearman({1, 1, 1}, {1, 2, 3})));
  EXPECT_TRUE(std::isnan(spearman({1, 2}, {1, 2})));
}

}  // namespace
}  // namespace rotor::eval
