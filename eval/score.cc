#include "eval/score.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "kernels/status.h"

namespace rotor {

absl::StatusOr<ScoreResult> score_ids(LlamaModel& model, std::span<const int32_t> ids,
                                      bool keep_logits) {
  const int64_t n = static_cast<int64_t>(ids.size());
  const int64_t v = model.config().vocab_size;
  if (n < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("need at least 2 tokens to score, got ", n));
  }
  if (n > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError(absl::StrCat(n, " tokens: too many for i32 positions"));
  }
  for (int64_t i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] >= v) {
      return absl::InvalidArgumentError(absl::StrCat("token ", i + 1, ": id ", ids[i],
                                                     " outside [0, ", v, ")"));
    }
  }
  Batch batch;
  batch.input_ids = Tensor::empty({1, n}, DType::kI32);
  batch.positions = Tensor::empty({1, n}, DType::kI32);
  for (int64_t i = 0; i < n; ++i) {
    batch.input_ids.data<int32_t>()[i] = ids[i];
    batch.positions.data<int32_t>()[i] = static_cast<int32_t>(i);
  }
  // logits() needs no targets; it is the forward pass and the full head matmul.
  const Tensor logits = model.logits(batch).to(Device::cpu());
  if (logits.dtype() != DType::kF32 || logits.dim(0) != n || logits.dim(1) != v) {
    return absl::InternalError(absl::StrCat("unexpected logits ", logits.str()));
  }
  const float* l = logits.data<float>();
  ScoreResult r;
  r.vocab_size = v;
  r.scored = n - 1;
  r.logprobs.assign(static_cast<size_t>(n), std::numeric_limits<double>::quiet_NaN());
  for (int64_t i = 1; i < n; ++i) {
    const float* row = l + (i - 1) * v;
    double mx = -std::numeric_limits<double>::infinity();
    for (int64_t k = 0; k < v; ++k) mx = std::max(mx, static_cast<double>(row[k]));
    double sum = 0;
    for (int64_t k = 0; k < v; ++k) sum += std::exp(static_cast<double>(row[k]) - mx);
    const double lp = static_cast<double>(row[ids[i]]) - (mx + std::log(sum));
    r.logprobs[static_cast<size_t>(i)] = lp;
    r.nll_sum -= lp;
  }
  if (keep_logits) r.logits.assign(l, l + n * v);
  return r;
}

absl::StatusOr<std::string> read_text_file(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": is a directory"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat(path, ": read error"));
  return ss.str();
}

absl::StatusOr<std::vector<int32_t>> read_token_file(const std::string& path, int64_t vocab_size) {
  ROTOR_ASSIGN_OR_RETURN(std::string text, read_text_file(path));
  std::vector<int32_t> ids;
  std::istringstream in(text);
  for (std::string word; in >> word;) {
    const size_t index = ids.size() + 1;
    int64_t id = 0;
    if (!absl::SimpleAtoi(word, &id)) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": token ", index, ": '", word, "' is not an integer"));
    }
    if (id < 0 || id >= vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": token ", index, ": id ", id,
                                                     " outside the vocabulary [0, ", vocab_size, ")"));
    }
    ids.push_back(static_cast<int32_t>(id));
  }
  return ids;
}

absl::StatusOr<std::vector<int32_t>> encode_text_file(const Tokenizer& tokenizer, const std::string& path,
                                                      int64_t vocab_size) {
  ROTOR_ASSIGN_OR_RETURN(std::string text, read_text_file(path));
  ROTOR_ASSIGN_OR_RETURN(std::vector<int32_t> ids, tokenizer.encode(text));
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": token ", i + 1, ": the tokenizer (",
                                                     tokenizer.spec(), ") gave id ", ids[i],
                                                     ", outside the model's vocabulary [0, ", vocab_size, ")"));
    }
  }
  return ids;
}

}  // namespace rotor
