// Synthetic retrieval documents. See synthetic.h.
#include "eval/synthetic.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "data/indexed_dataset.h"
#include "eval/retrieval.h"
#include "eval/ruler_text.h"
#include "kernels/status.h"

namespace rotor {
namespace {

absl::StatusOr<std::vector<int32_t>> encode(const Tokenizer& t, const std::string& text) {
  absl::StatusOr<std::vector<int32_t>> ids = t.encode(text);
  if (!ids.ok()) return absl::Status(ids.status().code(), absl::StrCat("tokenizer ", t.spec(), ": ", ids.status().message()));
  return ids;
}

absl::Status too_short(const char* kind, int64_t length, int64_t fixed) {
  return absl::InvalidArgumentError(absl::StrCat("synthetic ", kind, " documents of ", length,
                                                 " tokens: the prompt's fixed text and answer take ", fixed,
                                                 " (use a length of at least ", fixed + 1, ")"));
}

absl::StatusOr<SyntheticDocument> passkey_document(const Tokenizer& t, int64_t length, ruler::Rng& rng) {
  const int64_t key = rng.between(10000, 99999);
  const double depth = static_cast<double>(rng.below(1001)) / 1000.0;
  ROTOR_ASSIGN_OR_RETURN(std::vector<int32_t> answer, encode(t, absl::StrCat(" ", key, ".")));
  const int64_t prompt = length - static_cast<int64_t>(answer.size()) - 1;
  absl::StatusOr<RetrievalPrompt> p = passkey_prompt(t, prompt, depth, key);
  if (!p.ok()) {
    ROTOR_ASSIGN_OR_RETURN(std::vector<int32_t> fixed, encode(t, absl::StrCat(kPasskeyInstruction, kPasskeyQuestion,
                                                                               "The pass key is 12345. Remember it. "
                                                                               "12345 is the pass key. ")));
    return too_short("passkey", length, static_cast<int64_t>(fixed.size() + answer.size()) + 2);
  }
  SyntheticDocument doc{.ids = std::move(p->ids), .answer_start = prompt};
  doc.ids.insert(doc.ids.end(), answer.begin(), answer.end());
  doc.ids.push_back(t.eos_id());
  return doc;
}

absl::StatusOr<SyntheticDocument> needle_document(const Tokenizer& t, const std::vector<std::string>& words,
                                                     int64_t length, int64_t distractors, ruler::Rng& rng) {
  if (words.empty()) return absl::InvalidArgumentError("synthetic needle documents need the word list");
  auto key_of = [&] { return absl::StrCat(words[rng.below(words.size())], "-", words[rng.below(words.size())]); };
  const std::string key = key_of(), value = absl::StrCat(rng.between(1000000, 9999999));
  std::vector<std::string> needles = {absl::StrCat("One of the special magic numbers for ", key, " is: ", value, ".")};
  for (int64_t i = 0; i < distractors; ++i) {
    std::string other;
    do other = key_of();
    while (other == key);
    needles.push_back(absl::StrCat("One of the special magic numbers for ", other, " is: ",
                                   rng.between(1000000, 9999999), "."));
  }
  rng.shuffle(needles);
  ROTOR_ASSIGN_OR_RETURN(std::vector<int32_t> head, encode(t, "A special magic number is hidden within the following text. "
                                                             "Make sure to memorize it. I will quiz you about the number "
                                                             "afterwards.\n"));
  ROTOR_ASSIGN_OR_RETURN(std::vector<int32_t> tail, encode(t, absl::StrCat(
      "\nWhat is the special magic number for ", key, " mentioned in the provided text? The special magic number for ",
      key, " mentioned in the provided text is")));
  ROTOR_ASSIGN_OR_RETURN(std::vector<int32_t> answer, encode(t, absl::StrCat(" ", value, ".")));
  tail.insert(tail.end(), answer.begin(), answer.end());
  ROTOR_ASSIGN_OR_RETURN(std::vector<int32_t> noise, encode(t, absl::StrCat("The grass is green. The sky is blue. The sun is "
                                                                              "yellow. Here we go. There and back again.\n")));
  std::vector<std::vector<int32_t>> needle_ids;
  int64_t fixed = static_cast<int64_t>(head.size() + tail.size()) + 1;
  for (const std::string& n : needles) {
    ROTOR_ASSIGN_OR_RETURN(std::vector<int32_t> ids, encode(t, n + "\n"));
    fixed += static_cast<int64_t>(ids.size());
    needle_ids.push_back(std::move(ids));
  }
  if (fixed > length) return too_short("needle", length, fixed);
  // Filler: noise sentences cut to the room left; needles at random filler offsets.
  const int64_t room = length - fixed;
  std::vector<int32_t> filler;
  while (static_cast<int64_t>(filler.size()) < room) filler.insert(filler.end(), noise.begin(), noise.end());
  filler.resize(static_cast<size_t>(room));
  std::vector<int64_t> at;
  for (size_t i = 0; i < needle_ids.size(); ++i) at.push_back(static_cast<int64_t>(rng.below(static_cast<uint64_t>(room) + 1)));
  std::sort(at.begin(), at.end());
  std::vector<int32_t> doc = head;
  int64_t done = 0;
  for (size_t i = 0; i < needle_ids.size(); ++i) {
    doc.insert(doc.end(), filler.begin() + done, filler.begin() + at[i]);
    doc.insert(doc.end(), needle_ids[i].begin(), needle_ids[i].end());
    done = at[i];
  }
  doc.insert(doc.end(), filler.begin() + done, filler.end());
  doc.insert(doc.end(), tail.begin(), tail.end());
  doc.push_back(t.eos_id());
  return SyntheticDocument{.ids = std::move(doc), .answer_start = length - 1 - static_cast<int64_t>(answer.size())};
}

}  // namespace

absl::StatusOr<SyntheticDocument> synthetic_document(const Tokenizer& tokenizer, const std::vector<std::string>& words,
                                                     const SyntheticOptions& options, int64_t index) {
  if (tokenizer.eos_id() < 0) return absl::InvalidArgumentError(absl::StrCat("tokenizer ", tokenizer.spec(), " has no eos token"));
  ruler::Rng rng(mix64(options.seed ^ mix64(static_cast<uint64_t>(index))));
  if (options.min_length > options.length)
    return absl::InvalidArgumentError(absl::StrCat("synthetic: length range ", options.min_length, "-", options.length, " is empty"));
  const int64_t length = options.min_length > 0 ? rng.between(options.min_length, options.length) : options.length;
  SyntheticDocument doc;
  if (index < options.passkey) {
    ROTOR_ASSIGN_OR_RETURN(doc, passkey_document(tokenizer, length, rng));
  } else {
    ROTOR_ASSIGN_OR_RETURN(doc, needle_document(tokenizer, words, length, options.distractors, rng));
  }
  ROTOR_CHECK_EQ(static_cast<int64_t>(doc.ids.size()), length) << "synthetic document " << index;
  return doc;
}

absl::Status write_synthetic_dataset(const Tokenizer& tokenizer, const std::vector<std::string>& words,
                                     const SyntheticOptions& options, const std::string& prefix) {
  if (options.passkey < 0 || options.needle < 0 || options.passkey + options.needle < 1)
    return absl::InvalidArgumentError("synthetic: no documents to write");
  const TokenDType dtype = tokenizer.vocab_size() <= 65536 ? TokenDType::kUint16 : TokenDType::kInt32;
  ROTOR_ASSIGN_OR_RETURN(IndexedDatasetWriter w, IndexedDatasetWriter::create(prefix, dtype));
  for (int64_t i = 0; i < options.passkey + options.needle; ++i) {
    // An error returns before finalize: the writer leaves no dataset behind.
    ROTOR_ASSIGN_OR_RETURN(SyntheticDocument doc, synthetic_document(tokenizer, words, options, i));
    const auto answer = doc.ids.begin() + doc.answer_start;
    ROTOR_RETURN_IF_ERROR(w.add_sequence(std::vector<int64_t>(doc.ids.begin(), answer)));
    ROTOR_RETURN_IF_ERROR(w.add_sequence(std::vector<int64_t>(answer, doc.ids.end())));
    w.end_document();
  }
  return w.finalize();
}

}  // namespace rotor
