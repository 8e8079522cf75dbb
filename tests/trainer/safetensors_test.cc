// safetensors: round trips, the exact layout rules, and an error naming the
// problem for every malformed header.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <string>

#include "tests/common/testing.h"
#include "trainer/safetensors.h"

namespace rotor {
namespace {

std::string temp_path(const std::string& name) { return ::testing::TempDir() + "/" + name; }

// Writes [8-byte length][header][data] by hand.
std::string write_raw(const std::string& name, const std::string& header, size_t data_bytes,
                      int64_t claimed_len = -1) {
  const std::string path = temp_path(name);
  std::ofstream out(path, std::ios::binary);
  uint64_t n = claimed_len >= 0 ? static_cast<uint64_t>(claimed_len) : header.size();
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>((n >> (8 * i)) & 0xff));
  out << header;
  out << std::string(data_bytes, '\0');
  return path;
}

std::string open_error(const std::string& path) {
  auto f = SafetensorsFile::open(path);
  EXPECT_FALSE(f.ok()) << path;
  return f.ok() ? "" : std::string(f.status().message());
}

TEST(Safetensors, RoundTripMixedDtypesAlignedAndOrdered) {
  Tensor a = testing::random_tensor({3, 5}, DType::kF32, 1);
  Tensor b = testing::random_tensor({7}, DType::kF32, 2);
  Tensor ids = Tensor::from_vector({1, -2, 300000}, {3}, DType::kI32);
  Tensor steps = Tensor::empty({1}, DType::kI64);
  steps.data<int64_t>()[0] = 9007199254740993LL;  // not representable in a double
  const std::string path = temp_path("round.safetensors");
  ASSERT_TRUE(write_safetensors(path, {{"z.weight", a}, {"a.bias", b}, {"ids", ids}, {"step", steps}},
                                {{"note", "hello"}}).ok());
  auto f = SafetensorsFile::open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->metadata().at("format"), "pt");
  EXPECT_EQ(f->metadata().at("note"), "hello");
  // Largest element size first, then by name: step (8), a.bias, ids, z.weight (4).
  ASSERT_EQ(f->entries().size(), 4u);
  Tensor a2 = Tensor::empty({3, 5}, DType::kF32), b2 = Tensor::empty({7}, DType::kF32);
  Tensor ids2 = Tensor::empty({3}, DType::kI32), steps2 = Tensor::empty({1}, DType::kI64);
  ASSERT_TRUE(f->read_into("z.weight", a2).ok());
  ASSERT_TRUE(f->read_into("a.bias", b2).ok());
  ASSERT_TRUE(f->read_into("ids", ids2).ok());
  ASSERT_TRUE(f->read_into("step", steps2).ok());
  EXPECT_EQ(testing::max_abs_diff(a, a2), 0.0);
  EXPECT_EQ(testing::max_abs_diff(b, b2), 0.0);
  EXPECT_EQ(ids2.to_vector(), ids.to_vector());
  EXPECT_EQ(steps2.data<int64_t>()[0], 9007199254740993LL);

  // Header length is a multiple of 8, so data starts 8-byte aligned.
  std::ifstream in(path, std::ios::binary);
  uint8_t len[8];
  in.read(reinterpret_cast<char*>(len), 8);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len[i];
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ(f->find("step")->begin, 0u);
  EXPECT_FALSE(f->read_into("missing", a2).ok());
  EXPECT_FALSE(f->read_into("a.bias", a2).ok()) << "shape mismatch must fail";
}

TEST(Safetensors, Bf16ExportAndF16Import) {
  Tensor w = Tensor::from_vector({1.0, -2.5, 3.14159, 1e-3}, {2, 2}, DType::kF32);
  const std::string path = temp_path("bf16.safetensors");
  ASSERT_TRUE(write_safetensors(path, {{"w", w}}, {}, SafetensorsFloat::kBF16).ok());
  auto f = SafetensorsFile::open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->find("w")->dtype, "BF16");
  Tensor back = Tensor::empty({2, 2}, DType::kF32);
  ASSERT_TRUE(f->read_into("w", back).ok());
  testing::expect_close(back, w, 0, 1.0 / 256, "bf16 keeps 8 significant bits");

  // F16 1.0 = 0x3c00, -2.0 = 0xc000, 65504 = 0x7bff, smallest subnormal 2^-24 = 0x0001.
  const std::string hdr = R"({"h":{"dtype":"F16","shape":[4],"data_offsets":[0,8]}})";
  std::string padded = hdr + std::string((8 - hdr.size() % 8) % 8, ' ');
  const std::string p16 = temp_path("f16.safetensors");
  {
    std::ofstream out(p16, std::ios::binary);
    uint64_t n = padded.size();
    for (int i = 0; i < 8; ++i) out.put(static_cast<char>((n >> (8 * i)) & 0xff));
    out << padded;
    const uint16_t vals[4] = {0x3c00, 0xc000, 0x7bff, 0x0001};
    out.write(reinterpret_cast<const char*>(vals), 8);
  }
  auto g = SafetensorsFile::open(p16);
  ASSERT_TRUE(g.ok()) << g.status();
  Tensor h = Tensor::empty({4}, DType::kF32);
  ASSERT_TRUE(g->read_into("h", h).ok());
  EXPECT_EQ(h.to_vector(), (std::vector<double>{1.0, -2.0, 65504.0, std::ldexp(1.0, -24)}));
}

// float_to_half against every binary16 value (half -> float -> half is the
// identity for all 2^16 codes but NaN payloads) and against rounding cases
// worked out by hand; then the F16 writer round trip and its range error.
TEST(Safetensors, F16ConversionAndWriter) {
  for (uint32_t c = 0; c < 0x10000u; ++c) {
    const uint16_t h = static_cast<uint16_t>(c);
    const float f = half_to_float(h);
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(half_to_float(float_to_half(f)))) << c;
      continue;
    }
    ASSERT_EQ(float_to_half(f), h) << "code " << c << " value " << f;
  }
  EXPECT_EQ(float_to_half(1.0f + std::ldexp(1.0f, -11)), 0x3c00);  // tie: to even (1.0)
  EXPECT_EQ(float_to_half(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);  // tie: to even (up)
  EXPECT_EQ(float_to_half(1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20)), 0x3c01);
  EXPECT_EQ(float_to_half(65519.0f), 0x7bff);  // just below the midpoint to 65536
  EXPECT_EQ(float_to_half(65520.0f), 0x7c00);  // the midpoint: inf
  EXPECT_EQ(float_to_half(std::ldexp(1.0f, -25)), 0x0000);  // half the smallest subnormal: even
  EXPECT_EQ(float_to_half(std::ldexp(1.5f, -25)), 0x0001);
  EXPECT_EQ(float_to_half(-std::ldexp(1.0f, -14) * (1 - std::ldexp(1.0f, -12))), 0x8400);  // carry into the smallest normal

  Tensor w = Tensor::from_vector({1.0, -2.5, 3.14159, 1e-3, 65504, -6e-8}, {2, 3}, DType::kF32);
  const std::string path = temp_path("f16w.safetensors");
  ASSERT_TRUE(write_safetensors(path, {{"w", w}}, {}, SafetensorsFloat::kF16).ok());
  auto f = SafetensorsFile::open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->find("w")->dtype, "F16");
  Tensor back = Tensor::empty({2, 3}, DType::kF32);
  ASSERT_TRUE(f->read_into("w", back).ok());
  for (int64_t i = 0; i < w.numel(); ++i)
    EXPECT_EQ(back.item(i), half_to_float(float_to_half(static_cast<float>(w.item(i))))) << i;
  EXPECT_EQ(back.item(4), 65504.0);
  Tensor big = Tensor::from_vector({1.0, 70000.0}, {2}, DType::kF32);
  const absl::Status s = write_safetensors(temp_path("f16big.safetensors"), {{"big.weight", big}}, {},
                                           SafetensorsFloat::kF16);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(std::string(s.message()).find("'big.weight' element 1 = 70000"), std::string::npos) << s;
}

TEST(Safetensors, MalformedFilesNameTheProblem) {
  const std::string ok_tensor = R"("t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  EXPECT_NE(open_error(write_raw("empty_header.st", "", 0)).find("header is not valid JSON"),
            std::string::npos);
  {
    const std::string p = temp_path("tiny.st");
    std::ofstream(p) << "abc";
    EXPECT_NE(open_error(p).find("shorter than the 8-byte header length"), std::string::npos);
  }
  EXPECT_NE(open_error(write_raw("len.st", "{" + ok_tensor + "}", 8, 1000)).find("header length 1000"),
            std::string::npos);
  EXPECT_NE(open_error(write_raw("json.st", "{\"t\": [1,", 8)).find("header is not valid JSON"),
            std::string::npos);
  EXPECT_NE(open_error(write_raw("dtype.st", R"({"t":{"dtype":"Q7","shape":[2],"data_offsets":[0,8]}})", 8))
                .find("unknown dtype 'Q7'"),
            std::string::npos);
  EXPECT_NE(open_error(write_raw("size.st", R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8))
                .find("need 12"),
            std::string::npos);
  EXPECT_NE(open_error(write_raw("trunc.st", "{" + ok_tensor + "}", 4)).find("truncated"),
            std::string::npos);
  EXPECT_NE(open_error(write_raw("overlap.st",
                                 R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                 R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                                 12))
                .find("overlapping"),
            std::string::npos);
  EXPECT_NE(open_error(write_raw("gap.st",
                                 R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                 R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                                 12))
                .find("gap"),
            std::string::npos);
  EXPECT_NE(open_error(write_raw("trail.st", "{" + ok_tensor + "}", 16)).find("trailing"),
            std::string::npos);
  EXPECT_NE(open_error(write_raw("keys.st", R"({"t":{"dtype":"F32","shape":[2]}})", 8))
                .find("data_offsets"),
            std::string::npos);
  EXPECT_NE(open_error(temp_path("does_not_exist.st")).find("No such file"), std::string::npos);
}

}  // namespace
}  // namespace rotor
