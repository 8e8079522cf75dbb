// Word list, essay text and sentences of the RULER prompts. See ruler_text.h.
#include "eval/ruler_text.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "data/indexed_dataset.h"

namespace rotor::ruler {

std::vector<int64_t> Rng::sample(int64_t n, int64_t k) {
  // Partial Fisher-Yates over a sparse permutation: O(k) draws and memory.
  std::vector<int64_t> out;
  std::unordered_map<int64_t, int64_t> moved;
  auto at = [&](int64_t i) {
    auto it = moved.find(i);
    return it == moved.end() ? i : it->second;
  };
  for (int64_t i = 0; i < k; ++i) {
    const int64_t j = i + static_cast<int64_t>(below(static_cast<uint64_t>(n - i)));
    const int64_t vi = at(i), vj = at(j);
    out.push_back(vj);
    moved[j] = vi;
    moved[i] = vj;
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> load_word_list(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat(
        "the English word list ", path,
        " cannot be read: install Debian's wamerican package (apt-get install wamerican), "
        "which provides it (launch/setup installs it)"));
  }
  std::vector<std::string> words;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty() && std::all_of(line.begin(), line.end(), [](char c) { return c >= 'a' && c <= 'z'; }))
      words.push_back(line);
  }
  std::sort(words.begin(), words.end());
  words.erase(std::unique(words.begin(), words.end()), words.end());
  if (words.size() < 1000) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": holds ", words.size(), " lowercase alphabetic words; RULER's keys and word lists "
        "need at least 1000 (Debian's wamerican has ~64K)"));
  }
  return words;
}

std::vector<std::string> essay_words(std::string_view text) {
  std::vector<std::string> words;
  std::string w;
  for (char c : text) {
    if (std::isspace(static_cast<unsigned char>(c))) {
      if (!w.empty()) words.push_back(std::move(w));
      w.clear();
    } else {
      w += c;
    }
  }
  if (!w.empty()) words.push_back(std::move(w));
  return words;
}

std::vector<std::string> split_sentences(std::string_view text) {
  std::vector<std::string> out;
  auto space = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
  size_t start = 0;
  while (start < text.size() && space(text[start])) ++start;
  for (size_t i = start; i < text.size(); ++i) {
    if (text[i] != '.' && text[i] != '!' && text[i] != '?') continue;
    size_t end = i + 1;
    while (end < text.size() && (text[end] == '"' || text[end] == '\'' || text[end] == ')' ||
                                 text[end] == ']'))
      ++end;
    if (end < text.size() && !space(text[end])) continue;
    out.emplace_back(text.substr(start, end - start));
    start = end;
    while (start < text.size() && space(text[start])) ++start;
    i = start == 0 ? 0 : start - 1;
  }
  if (start < text.size()) {
    size_t end = text.size();
    while (end > start && space(text[end - 1])) --end;
    out.emplace_back(text.substr(start, end - start));
  }
  return out;
}

absl::StatusOr<std::string> read_dataset_text(const std::string& prefix, const Tokenizer& tokenizer,
                                              int64_t max_chars) {
  absl::StatusOr<IndexedDataset> ds = IndexedDataset::open(prefix);
  if (!ds.ok()) return absl::NotFoundError(absl::StrCat("essay haystack: ", ds.status().message()));
  std::string text;
  for (int64_t doc = 0; doc < ds->num_documents() && static_cast<int64_t>(text.size()) < max_chars; ++doc) {
    const auto [first, last] = ds->document_range(doc);
    std::vector<int32_t> kept;
    for (int64_t i = first; i < last; ++i) {
      std::vector<int32_t> ids(static_cast<size_t>(ds->sequence_length(i)));
      if (absl::Status s = ds->read(i, 0, static_cast<int64_t>(ids.size()), ids.data()); !s.ok())
        return absl::DataLossError(absl::StrCat(prefix, ": ", s.message()));
      for (int32_t id : ids)
        if (id >= 0 && id < tokenizer.vocab_size() && id != tokenizer.eos_id() && id != tokenizer.bos_id())
          kept.push_back(id);
    }
    absl::StatusOr<std::string> s = tokenizer.decode(kept);
    if (!s.ok()) return absl::DataLossError(absl::StrCat(prefix, ": document ", doc, ": ", s.status().message()));
    if (!text.empty()) text += "\n\n";
    text += *s;
  }
  if (essay_words(text).empty()) {
    return absl::InvalidArgumentError(absl::StrCat(prefix, ": decodes to no words for the essay haystack"));
  }
  return text;
}

}  // namespace rotor::ruler
