// Synthetic retrieval documents (eval/synthetic.h): every document is exactly
// its length and ends with eos; a passkey document's answer is the key its
// prompt hides, a needle document's answer is the value of the key its
// question asks (found in the text by reading it, among distractors with other
// keys); the dataset is a pure function of its options; a length too short
// names the minimum. Also `rotor prep --synthetic` writes them as a dataset.
#include "eval/synthetic.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "data/indexed_dataset.h"
#include "eval/retrieval.h"
#include "eval/ruler_text.h"

namespace rotor {
namespace {

const Tokenizer& bytes() {
  static const std::unique_ptr<Tokenizer> t = *make_tokenizer("bytes");
  return *t;
}

const std::vector<std::string>& words() {
  static const std::vector<std::string> w = *ruler::load_word_list();
  return w;
}

std::string text_of(const std::vector<int32_t>& ids) { return answer_text(bytes(), ids); }

std::string between(const std::string& s, const std::string& a, const std::string& b, size_t from = 0) {
  const size_t i = s.find(a, from);
  if (i == std::string::npos) return "";
  const size_t j = s.find(b, i + a.size());
  return j == std::string::npos ? "" : s.substr(i + a.size(), j - i - a.size());
}

TEST(Synthetic, PasskeyDocumentsAnswerTheirKey) {
  const SyntheticOptions o{.passkey = 20, .needle = 0, .length = 400, .distractors = 0, .seed = 3};
  std::set<std::string> keys;
  for (int64_t i = 0; i < o.passkey; ++i) {
    const SyntheticDocument d = *synthetic_document(bytes(), words(), o, i);
    const std::vector<int32_t>& doc = d.ids;
    ASSERT_EQ(static_cast<int64_t>(doc.size()), o.length);
    EXPECT_EQ(doc.back(), bytes().eos_id());
    const std::string text = text_of(doc);
    const std::string key = between(text, "The pass key is ", ". Remember it.");
    ASSERT_EQ(key.size(), 5u) << text;
    EXPECT_EQ(text_of(std::vector<int32_t>(doc.begin() + d.answer_start, doc.end())), " " + key + ".");
    EXPECT_EQ(text.substr(text.size() - std::string(kPasskeyQuestion).size() - 7),
              std::string(kPasskeyQuestion) + " " + key + ".");
    keys.insert(key);
  }
  EXPECT_GT(keys.size(), 15u) << "keys vary";
}

TEST(Synthetic, NeedleDocumentsAnswerTheAskedKeyAmongDistractors) {
  const SyntheticOptions o{.passkey = 0, .needle = 20, .length = 600, .distractors = 2, .seed = 4};
  for (int64_t i = 0; i < o.needle; ++i) {
    const SyntheticDocument d = *synthetic_document(bytes(), words(), o, i);
    const std::vector<int32_t>& doc = d.ids;
    ASSERT_EQ(static_cast<int64_t>(doc.size()), o.length);
    EXPECT_EQ(doc.back(), bytes().eos_id());
    const std::string text = text_of(doc);
    const std::string asked = between(text, "\nWhat is the special magic number for ", " mentioned");
    ASSERT_FALSE(asked.empty()) << text;
    // Read the needles: the asked key's value, and the other keys.
    std::string value;
    int needles = 0;
    for (size_t at = text.find("One of the special magic numbers for "); at != std::string::npos;
         at = text.find("One of the special magic numbers for ", at + 1)) {
      ++needles;
      const std::string key = between(text, "for ", " is: ", at);
      if (key == asked) value = between(text, " is: ", ".", at);
    }
    EXPECT_EQ(needles, 3);
    ASSERT_EQ(value.size(), 7u) << text;
    const std::string ending = " mentioned in the provided text is " + value + ".";
    EXPECT_EQ(text.substr(text.size() - ending.size()), ending);
    EXPECT_EQ(text_of(std::vector<int32_t>(doc.begin() + d.answer_start, doc.end())), " " + value + ".");
  }
}

TEST(Synthetic, PureFunctionOfTheOptionsAndTooShortNamesTheMinimum) {
  const SyntheticOptions o{.passkey = 2, .needle = 2, .length = 500, .distractors = 1, .seed = 9};
  for (int64_t i = 0; i < 4; ++i)
    EXPECT_EQ(synthetic_document(bytes(), words(), o, i)->ids, synthetic_document(bytes(), words(), o, i)->ids);
  SyntheticOptions other = o;
  other.seed = 10;
  EXPECT_NE(synthetic_document(bytes(), words(), o, 3)->ids, synthetic_document(bytes(), words(), other, 3)->ids);
  SyntheticOptions tiny = o;
  tiny.length = 100;
  absl::StatusOr<SyntheticDocument> s = synthetic_document(bytes(), words(), tiny, 0);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("synthetic passkey documents of 100 tokens"), std::string::npos) << s.status();
  EXPECT_NE(s.status().message().find("use a length of at least"), std::string::npos) << s.status();
}

TEST(Synthetic, ALengthRangeVariesTheLengths) {
  const SyntheticOptions o{.passkey = 30, .needle = 10, .length = 700, .min_length = 500, .distractors = 1, .seed = 6};
  std::set<size_t> lengths;
  for (int64_t i = 0; i < 40; ++i) {
    const SyntheticDocument d = *synthetic_document(bytes(), words(), o, i);
    EXPECT_GE(d.ids.size(), 500u);
    EXPECT_LE(d.ids.size(), 700u);
    EXPECT_EQ(d.ids.back(), bytes().eos_id());
    lengths.insert(d.ids.size());
  }
  EXPECT_GT(lengths.size(), 30u);
  SyntheticOptions empty = o;
  empty.min_length = 800;
  EXPECT_FALSE(synthetic_document(bytes(), words(), empty, 0).ok());
}

TEST(Synthetic, WritesADatasetOfWholeDocuments) {
  const std::string prefix = ::testing::TempDir() + "/synthetic_test_" + std::to_string(getpid());
  const SyntheticOptions o{.passkey = 3, .needle = 2, .length = 450, .distractors = 0, .seed = 1};
  ASSERT_TRUE(write_synthetic_dataset(bytes(), words(), o, prefix).ok());
  absl::StatusOr<IndexedDataset> ds = IndexedDataset::open(prefix);
  ASSERT_TRUE(ds.ok()) << ds.status();
  ASSERT_EQ(ds->num_documents(), 5);
  for (int64_t d = 0; d < 5; ++d) {
    const SyntheticDocument want = *synthetic_document(bytes(), words(), o, d);
    std::vector<int32_t> ids(450);
    ASSERT_TRUE(ds->read_document(d, 0, 450, ids.data()).ok());
    EXPECT_EQ(ids, want.ids);
    // Two sequences: the prompt, then the answer with eos (for `loss: last_sequence`).
    EXPECT_EQ(ds->document_range(d).second - ds->document_range(d).first, 2);
    EXPECT_EQ(ds->last_sequence_start(d), want.answer_start);
  }
}

}  // namespace
}  // namespace rotor
