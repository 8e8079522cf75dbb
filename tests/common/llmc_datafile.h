// Test helper: llm.c token shards written byte for byte as llm.c's
// dev/data/data_common.py write_datafile writes them, independently of
// rotor's own writer (data/llmc_shard.h):
//   header = np.zeros(256, dtype=np.int32)
//   header[0] = magic (gpt-2: 20240520, llama-3: 20240801)
//   header[1] = version (gpt-2: 1, llama-3: 7)
//   header[2] = len(toks)
//   f.write(header.tobytes()); f.write(np.array(toks, dtype=uint16 | uint32).tobytes())
// (numpy writes little-endian on the machines rotor runs on).
#pragma once

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

namespace rotor::testing {

enum class LlmcModel { kGpt2, kLlama3 };

inline void write_llmc_datafile(const std::string& filename, const std::vector<uint32_t>& toks,
                                LlmcModel model = LlmcModel::kGpt2) {
  const bool gpt2 = model == LlmcModel::kGpt2;
  std::vector<uint8_t> bytes;
  auto put = [&bytes](uint64_t v, int width) {
    for (int b = 0; b < width; ++b) bytes.push_back(static_cast<uint8_t>(v >> (8 * b)));
  };
  put(gpt2 ? 20240520 : 20240801, 4);
  put(gpt2 ? 1 : 7, 4);
  put(toks.size(), 4);
  for (int i = 3; i < 256; ++i) put(0, 4);
  for (uint32_t t : toks) put(t, gpt2 ? 2 : 4);
  std::ofstream(filename, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace rotor::testing
