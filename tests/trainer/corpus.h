// A real-text corpus for training tests: the GPL-3 text Debian ships, as
// bytes (ids 0..255), one document per 2000 bytes, each ending in eos (257),
// written as a Megatron indexed dataset `dir`/corpus. Returns the prefix.
#pragma once

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "data/indexed_dataset.h"

namespace rotor {
namespace testing {

inline std::string write_corpus(const std::string& dir) {
  std::ifstream in("/usr/share/common-licenses/GPL-3");
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  if (text.size() < 20000) text = std::string(20000, 'a');  // no license file: still runs
  const std::string prefix = dir + "/corpus";
  auto w = IndexedDatasetWriter::create(prefix, TokenDType::kUint16);
  EXPECT_TRUE(w.ok()) << w.status();
  // One document per paragraph block of ~2000 bytes, each ending in eos (257).
  for (size_t at = 0; at + 2000 <= text.size(); at += 2000) {
    std::vector<int64_t> toks;
    for (size_t i = at; i < at + 2000; ++i) toks.push_back(static_cast<unsigned char>(text[i]));
    toks.push_back(257);
    EXPECT_TRUE(w->add_sequence(toks).ok());
    w->end_document();
  }
  EXPECT_TRUE(w->finalize().ok());
  return prefix;
}

}  // namespace testing
}  // namespace rotor
