// Tests for model/rope: every method against its published values or the HF
// formula written out independently here, plus validation messages.
//
// Tolerance: inv_freq is computed in double and rounded to float once, so it
// differs from the exact value by at most half a float ulp (2^-24 ~ 6e-8
// relative). A relative tolerance of 1e-6 covers that with a 16x margin while
// still catching any formula mistake (the smallest effect tested, one step of
// the YaRN ramp at s = 4, changes a frequency by > 1e-2 relative).
#include "model/rope.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <string>
#include <utility>
#include <vector>

namespace rotor {
namespace {

constexpr double kRelTol = 1e-6;  // see the header comment

// Exact (double) unscaled inverse frequencies theta^(-2i/d).
std::vector<double> unscaled(double theta, int64_t d) {
  std::vector<double> inv(d / 2);
  for (int64_t i = 0; i < d / 2; ++i) inv[i] = std::pow(theta, -2.0 * i / d);
  return inv;
}

void expect_rel_near(double got, double want, const std::string& what) {
  ASSERT_TRUE(std::isfinite(want) && want != 0.0) << what << ": vacuous reference " << want;
  EXPECT_NEAR(got, want, kRelTol * std::abs(want)) << what;
}

RopeTables compute_or_fail(const RopeConfig& rope, int64_t d) {
  absl::StatusOr<RopeTables> t = compute_rope(rope, d);
  EXPECT_TRUE(t.ok()) << t.status();
  if (!t.ok()) return {};
  EXPECT_EQ(t->inv_freq.size(), static_cast<size_t>(d / 2));
  return *t;
}

// Message of validate_rope's error, or "" when valid; compute_rope must agree.
std::string rope_error(const RopeConfig& rope, int64_t d) {
  absl::Status s = validate_rope(rope, d);
  EXPECT_EQ(s.ok(), compute_rope(rope, d).ok());
  if (!s.ok()) EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  return s.ok() ? "" : std::string(s.message());
}

std::string scale_error(const LogitScaleConfig& scale) {
  absl::Status s = validate_logit_scale(scale);
  return s.ok() ? "" : std::string(s.message());
}

RopeConfig llama2_yarn(double s) {
  RopeConfig rope;
  rope.method = RopeMethod::kYarn;
  rope.theta = 10000;
  rope.factor = s;
  rope.original_max_position = 4096;
  return rope;
}

TEST(RopeNames, RoundTripAndUnknown) {
  for (RopeMethod m :
       {RopeMethod::kNone, RopeMethod::kLinear, RopeMethod::kNtk, RopeMethod::kDynamic,
        RopeMethod::kYarn, RopeMethod::kLlama3, RopeMethod::kLongRope}) {
    absl::StatusOr<RopeMethod> back = parse_rope_method(rope_method_name(m));
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, m);
  }
  for (LogitScaleKind k :
       {LogitScaleKind::kNone, LogitScaleKind::kConstant, LogitScaleKind::kLogPosition}) {
    absl::StatusOr<LogitScaleKind> back = parse_logit_scale_kind(logit_scale_kind_name(k));
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, k);
  }
  absl::StatusOr<RopeMethod> bad = parse_rope_method("yarn2");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("rope.method"), std::string::npos) << bad.status();
  EXPECT_NE(bad.status().message().find("none, linear, ntk, dynamic, yarn, llama3, longrope"),
            std::string::npos)
      << bad.status();
  absl::StatusOr<LogitScaleKind> bad_kind = parse_logit_scale_kind("log");
  ASSERT_FALSE(bad_kind.ok());
  EXPECT_NE(bad_kind.status().message().find("logit_scale.kind"), std::string::npos);
  EXPECT_NE(bad_kind.status().message().find("none, constant, log_position"), std::string::npos);
}

TEST(RopeNone, DefaultFrequenciesAndAbf) {
  for (double theta : {10000.0, 500000.0}) {
    RopeConfig rope;
    rope.theta = theta;
    const RopeTables t = compute_or_fail(rope, 128);
    const std::vector<double> want = unscaled(theta, 128);
    for (int i = 0; i < 64; ++i)
      expect_rel_near(t.inv_freq[i], want[i], "pair " + std::to_string(i));
    EXPECT_EQ(t.inv_freq[0], 1.0f);
    EXPECT_EQ(t.attention_factor, 1.0f);
  }
}

TEST(RopeLinear, DividesByFactor) {
  RopeConfig rope;
  rope.method = RopeMethod::kLinear;
  rope.factor = 4;
  const RopeTables t = compute_or_fail(rope, 128);
  const std::vector<double> base = unscaled(10000, 128);
  for (int i = 0; i < 64; ++i)
    expect_rel_near(t.inv_freq[i], base[i] / 4, "pair " + std::to_string(i));
  EXPECT_EQ(t.attention_factor, 1.0f);
}

// Published NTK-aware bases for d = 128, theta = 10000 (bloc97; seeds.md 1.3).
// The base is recovered from the last pair, inv_63 = theta'^(-126/128), where a
// 6e-8 relative float error moves theta' by only ~0.01 (inv_1 would give ~0.6).
TEST(RopeNtk, PublishedBases) {
  for (auto [s, published] :
       {std::pair{2.0, 20221.0}, {4.0, 40890.0}, {8.0, 82685.0}, {16.0, 167199.0}}) {
    RopeConfig rope;
    rope.method = RopeMethod::kNtk;
    rope.factor = s;
    const RopeTables t = compute_or_fail(rope, 128);
    const double from_last = std::pow(static_cast<double>(t.inv_freq[63]), -128.0 / 126.0);
    EXPECT_NEAR(from_last, published, 1.0) << "s=" << s;
    const double from_first = std::pow(static_cast<double>(t.inv_freq[1]), -64.0);
    EXPECT_NEAR(from_first, published, 1.0) << "s=" << s;
    const std::vector<double> want = unscaled(10000 * std::pow(s, 128.0 / 126.0), 128);
    for (int i = 0; i < 64; ++i)
      expect_rel_near(t.inv_freq[i], want[i], "pair " + std::to_string(i));
    EXPECT_EQ(t.attention_factor, 1.0f);
  }
}

TEST(RopeDynamic, EqualsNoneUpToOriginalThenNtkLikeBase) {
  RopeConfig none;
  const RopeTables base = compute_or_fail(none, 128);
  RopeConfig rope;
  rope.method = RopeMethod::kDynamic;
  rope.factor = 4;
  rope.original_max_position = 4096;
  for (int64_t n : {0, 1, 2048, 4096}) {
    rope.sequence_length = n;
    EXPECT_EQ(compute_or_fail(rope, 128).inv_freq, base.inv_freq) << "sequence_length " << n;
  }
  for (int64_t n : {4097, 8192, 16384, 65536}) {
    rope.sequence_length = n;
    const RopeTables t = compute_or_fail(rope, 128);
    const double theta = 10000 * std::pow(4.0 * n / 4096 - 3.0, 128.0 / 126.0);
    const std::vector<double> want = unscaled(theta, 128);
    for (int i = 0; i < 64; ++i) {
      expect_rel_near(t.inv_freq[i], want[i],
                      "n=" + std::to_string(n) + " pair " + std::to_string(i));
    }
    EXPECT_LT(t.inv_freq[63], base.inv_freq[63]);
  }
  // With s = 1 the base still grows: theta * (n/L)^(d/(d-2)), i.e. static NTK
  // with factor n/L (HF behaves the same way).
  rope.factor = 1;
  rope.sequence_length = 8192;
  RopeConfig ntk;
  ntk.method = RopeMethod::kNtk;
  ntk.factor = 2;
  const RopeTables want = compute_or_fail(ntk, 128);
  const RopeTables got = compute_or_fail(rope, 128);
  for (int i = 0; i < 64; ++i)
    expect_rel_near(got.inv_freq[i], want.inv_freq[i], "s=1 pair " + std::to_string(i));
}

// YaRN on Llama-2 (d 128, theta 1e4, L 4096): correction dims 20.94 and 45.03,
// so low = 20, high = 46 (seeds.md 1.5).
TEST(RopeYarn, Llama2BandsAndAttentionFactor) {
  const std::vector<double> base = unscaled(10000, 128);
  for (double s : {4.0, 16.0}) {
    const RopeTables t = compute_or_fail(llama2_yarn(s), 128);
    const std::string tag = "s=" + std::to_string(s) + " pair ";
    for (int i = 0; i <= 20; ++i) expect_rel_near(t.inv_freq[i], base[i], tag + std::to_string(i));
    for (int i = 46; i < 64; ++i)
      expect_rel_near(t.inv_freq[i], base[i] / s, tag + std::to_string(i));
    for (int i = 21; i <= 45; ++i) {
      EXPECT_LT(t.inv_freq[i], base[i] * (1 - kRelTol)) << tag << i;
      EXPECT_GT(t.inv_freq[i], base[i] / s * (1 + kRelTol)) << tag << i;
      // The HF blend with ramp (i - 20) / 26.
      const double ramp = (i - 20) / 26.0;
      expect_rel_near(t.inv_freq[i], base[i] / s * ramp + base[i] * (1 - ramp),
                      tag + std::to_string(i));
    }
    expect_rel_near(t.attention_factor, 0.1 * std::log(s) + 1, "attention factor");
  }
  EXPECT_NEAR(compute_or_fail(llama2_yarn(16), 128).attention_factor, 1.2773, 1e-4);
  EXPECT_NEAR(compute_or_fail(llama2_yarn(4), 128).attention_factor, 1.1386, 1e-4);
}

TEST(RopeYarn, UntruncatedRampGivenAttentionFactorAndFactorOne) {
  RopeConfig rope = llama2_yarn(16);
  rope.truncate = false;
  const std::vector<double> base = unscaled(10000, 128);
  const double fcd_fast =
      128 * std::log(4096 / (32 * 2 * std::numbers::pi)) / (2 * std::log(10000.0));
  const double fcd_slow =
      128 * std::log(4096 / (1 * 2 * std::numbers::pi)) / (2 * std::log(10000.0));
  ASSERT_NEAR(fcd_fast, 20.944, 1e-3);
  ASSERT_NEAR(fcd_slow, 45.027, 1e-3);
  const RopeTables t = compute_or_fail(rope, 128);
  for (int i : {20, 21, 30, 45, 46}) {
    const double ramp = std::clamp((i - fcd_fast) / (fcd_slow - fcd_fast), 0.0, 1.0);
    expect_rel_near(t.inv_freq[i], base[i] / 16 * ramp + base[i] * (1 - ramp),
                    "pair " + std::to_string(i));
  }
  rope.attention_factor = 1.5;
  EXPECT_EQ(compute_or_fail(rope, 128).attention_factor, 1.5f);
  // factor 1: no interpolation anywhere, attention factor 1.
  const RopeTables one = compute_or_fail(llama2_yarn(1), 128);
  for (int i = 0; i < 64; ++i)
    expect_rel_near(one.inv_freq[i], base[i], "s=1 pair " + std::to_string(i));
  EXPECT_EQ(one.attention_factor, 1.0f);
}

// Llama-3.1: factor 8, low 1, high 4, L 8192, theta 5e5. Wavelengths < 2048
// unchanged (pairs 0..28), > 8192 divided by 8 (pairs 35..63), 29..34 blended.
TEST(RopeLlama3, Llama31Bands) {
  RopeConfig rope;
  rope.method = RopeMethod::kLlama3;
  rope.theta = 500000;
  rope.factor = 8;
  rope.low_freq_factor = 1;
  rope.high_freq_factor = 4;
  rope.original_max_position = 8192;
  const RopeTables t = compute_or_fail(rope, 128);
  const std::vector<double> base = unscaled(500000, 128);
  int kept = 0, divided = 0, blended = 0;
  for (int i = 0; i < 64; ++i) {
    const double wavelen = 2 * std::numbers::pi / base[i];
    const std::string tag = "pair " + std::to_string(i);
    if (wavelen < 2048) {
      ++kept;
      expect_rel_near(t.inv_freq[i], base[i], tag);
    } else if (wavelen > 8192) {
      ++divided;
      expect_rel_near(t.inv_freq[i], base[i] / 8, tag);
    } else {
      ++blended;
      EXPECT_LT(t.inv_freq[i], base[i] * (1 - kRelTol)) << tag;
      EXPECT_GT(t.inv_freq[i], base[i] / 8 * (1 + kRelTol)) << tag;
    }
  }
  EXPECT_EQ(kept, 29);
  EXPECT_EQ(divided, 29);
  EXPECT_EQ(blended, 6);
  for (int i : {29, 32, 34}) {
    const double wavelen = 2 * std::numbers::pi / base[i];
    const double smooth = (8192 / wavelen - 1) / (4 - 1);
    expect_rel_near(t.inv_freq[i], (1 - smooth) * base[i] / 8 + smooth * base[i],
                    "pair " + std::to_string(i));
  }
  EXPECT_EQ(t.attention_factor, 1.0f);
}

TEST(RopeLongRope, SwitchesAtOriginalLengthAndAttentionFactor) {
  RopeConfig rope;
  rope.method = RopeMethod::kLongRope;
  rope.original_max_position = 4096;
  rope.factor = 8;
  for (int i = 0; i < 4; ++i) {
    rope.short_factor.push_back(1.0 + i);
    rope.long_factor.push_back(2.0 + 3 * i);
  }
  const std::vector<double> base = unscaled(10000, 8);
  for (auto [n, ext] : {std::pair{int64_t{0}, &rope.short_factor},
                        {int64_t{4096}, &rope.short_factor},
                        {int64_t{4097}, &rope.long_factor}}) {
    rope.sequence_length = n;
    const RopeTables t = compute_or_fail(rope, 8);
    for (int i = 0; i < 4; ++i) {
      expect_rel_near(t.inv_freq[i], base[i] / (*ext)[i],
                      "n=" + std::to_string(n) + " pair " + std::to_string(i));
    }
    expect_rel_near(t.attention_factor, std::sqrt(1 + std::log(8.0) / std::log(4096.0)),
                    "attention");
  }
  rope.attention_factor = 1.25;
  EXPECT_EQ(compute_or_fail(rope, 8).attention_factor, 1.25f);
  rope.attention_factor.reset();
  rope.factor = 1;
  EXPECT_EQ(compute_or_fail(rope, 8).attention_factor, 1.0f);
}

// Entropy-aware ABF: max(1, ln(p+1)/ln 4096), layers 0 and 1 untouched.
TEST(RopeLogitScale, LogPositionPublishedValues) {
  LogitScaleConfig scale;
  scale.kind = LogitScaleKind::kLogPosition;
  scale.base_length = 4096;
  scale.skip_layers = {0, 1};
  ASSERT_TRUE(validate_logit_scale(scale).ok());
  for (int64_t p : {0, 100, 4095}) EXPECT_EQ(logit_scale_at(scale, 2, p), 1.0) << p;
  EXPECT_NEAR(logit_scale_at(scale, 2, 8191), 13.0 / 12.0, 1e-12);
  EXPECT_NEAR(logit_scale_at(scale, 2, 8191), 1.0833, 1e-4);
  EXPECT_NEAR(logit_scale_at(scale, 5, 32767), 1.25, 1e-12);
  EXPECT_EQ(logit_scale_at(scale, 0, 32767), 1.0);
  EXPECT_EQ(logit_scale_at(scale, 1, 32767), 1.0);
  EXPECT_TRUE(logit_scale_is_identity(scale, 0));
  EXPECT_TRUE(logit_scale_is_identity(scale, 1));
  EXPECT_FALSE(logit_scale_is_identity(scale, 2));
  // A lower bound other than 1.
  scale.min = 1.1;
  EXPECT_EQ(logit_scale_at(scale, 2, 8191), 1.1);
  EXPECT_NEAR(logit_scale_at(scale, 2, 32767), 1.25, 1e-12);
}

TEST(RopeLogitScale, NoneAndConstant) {
  LogitScaleConfig scale;
  EXPECT_EQ(logit_scale_at(scale, 3, 100000), 1.0);
  EXPECT_TRUE(logit_scale_is_identity(scale, 3));
  scale.kind = LogitScaleKind::kConstant;
  scale.value = 1.5;
  scale.skip_layers = {7};
  EXPECT_EQ(logit_scale_at(scale, 0, 0), 1.5);
  EXPECT_EQ(logit_scale_at(scale, 0, 100000), 1.5);
  EXPECT_EQ(logit_scale_at(scale, 7, 100000), 1.0);
  EXPECT_FALSE(logit_scale_is_identity(scale, 0));
  EXPECT_TRUE(logit_scale_is_identity(scale, 7));
  scale.value = 1.0;
  EXPECT_TRUE(logit_scale_is_identity(scale, 0));
}

// Each error names the recipe key it is about.
TEST(RopeValidation, ErrorsNameTheirKey) {
  struct Case {
    const char* key;
    RopeConfig rope;
    int64_t head_dim;
  };
  std::vector<Case> cases;
  auto add = [&](const char* key, auto edit, int64_t d = 128) {
    RopeConfig r;
    edit(r);
    cases.push_back({key, r, d});
  };
  add(
      "model.head_dim", [](RopeConfig&) {}, 63);
  add(
      "model.head_dim", [](RopeConfig&) {}, 0);
  add(
      "model.head_dim", [](RopeConfig& r) { r.method = RopeMethod::kNtk; }, 2);
  add("rope.theta", [](RopeConfig& r) { r.theta = 0; });
  add("rope.theta", [](RopeConfig& r) { r.theta = std::nan(""); });
  add("rope.factor", [](RopeConfig& r) { r.factor = 0.5; });
  add("rope.sequence_length", [](RopeConfig& r) { r.sequence_length = -1; });
  for (RopeMethod m :
       {RopeMethod::kDynamic, RopeMethod::kYarn, RopeMethod::kLlama3, RopeMethod::kLongRope}) {
    add("rope.original_max_position", [m](RopeConfig& r) {
      r.method = m;
      r.short_factor.assign(64, 1.0);
      r.long_factor.assign(64, 1.0);
    });
  }
  auto yarn = [](RopeConfig& r) {
    r.method = RopeMethod::kYarn;
    r.original_max_position = 4096;
  };
  add("rope.beta_fast", [&](RopeConfig& r) {
    yarn(r);
    r.beta_fast = 1;
  });
  add("rope.beta_slow", [&](RopeConfig& r) {
    yarn(r);
    r.beta_slow = 0;
  });
  auto llama3 = [](RopeConfig& r) {
    r.method = RopeMethod::kLlama3;
    r.original_max_position = 8192;
  };
  add("rope.high_freq_factor", [&](RopeConfig& r) {
    llama3(r);
    r.high_freq_factor = 1;
  });
  add("rope.low_freq_factor", [&](RopeConfig& r) {
    llama3(r);
    r.low_freq_factor = -1;
  });
  auto longrope = [](RopeConfig& r) {
    r.method = RopeMethod::kLongRope;
    r.original_max_position = 4096;
    r.short_factor.assign(64, 1.0);
    r.long_factor.assign(64, 2.0);
  };
  add("rope.short_factor", [&](RopeConfig& r) {
    longrope(r);
    r.short_factor.resize(63);
  });
  add("rope.long_factor", [&](RopeConfig& r) {
    longrope(r);
    r.long_factor[5] = 0;
  });
  add("rope.short_factor", [](RopeConfig& r) { r.short_factor = {1.0}; });
  add("rope.attention_factor", [](RopeConfig& r) { r.attention_factor = 1.2; });
  add("rope.attention_factor", [&](RopeConfig& r) {
    yarn(r);
    r.attention_factor = 0;
  });

  for (const Case& c : cases) {
    const std::string msg = rope_error(c.rope, c.head_dim);
    EXPECT_NE(msg, "") << c.key;
    EXPECT_NE(msg.find(c.key), std::string::npos)
        << "message '" << msg << "' should name " << c.key;
  }
  EXPECT_EQ(rope_error(RopeConfig{}, 128), "");
  RopeConfig half;
  half.factor = 0.5;
  EXPECT_EQ(rope_error(half, 128), "rope.factor must be >= 1, got 0.5");
  EXPECT_EQ(rope_error(RopeConfig{}, 63), "model.head_dim must be even, got 63");
  RopeConfig other;
  other.method = RopeMethod::kLinear;
  other.attention_factor = 2;
  EXPECT_NE(rope_error(other, 128).find("rope.attention_factor applies only to yarn and longrope"),
            std::string::npos);
}

TEST(RopeValidation, LogitScaleErrorsNameTheirKey) {
  EXPECT_EQ(scale_error(LogitScaleConfig{}), "");
  LogitScaleConfig s;
  s.value = 0;
  EXPECT_NE(scale_error(s).find("logit_scale.value"), std::string::npos);
  s = {};
  s.base_length = 1;
  EXPECT_NE(scale_error(s).find("logit_scale.base_length"), std::string::npos);
  s = {};
  s.min = 0;
  EXPECT_NE(scale_error(s).find("logit_scale.min"), std::string::npos);
  s = {};
  s.skip_layers = {0, -1};
  EXPECT_NE(scale_error(s).find("logit_scale.skip_layers"), std::string::npos);
}

}  // namespace
}  // namespace rotor
