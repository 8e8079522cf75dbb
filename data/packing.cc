#include "data/packing.h"

#include <algorithm>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "kernels/random.h"
#include "kernels/status.h"

namespace rotor {

std::vector<int64_t> seeded_permutation(int64_t n, uint64_t seed, uint64_t stream) {
  std::vector<int64_t> p(static_cast<size_t>(n));
  std::iota(p.begin(), p.end(), int64_t{0});
  const uint64_t s = mix64(seed ^ mix64(stream + 0x243f6a8885a308d3ull));
  for (int64_t i = n - 1; i > 0; --i) {
    const int64_t j = static_cast<int64_t>(uniform01(s, static_cast<uint64_t>(i)) * (i + 1));
    std::swap(p[i], p[std::min(j, i)]);
  }
  return p;
}

PackedSampler::PackedSampler(const DocumentSource* dataset, const PackingOptions& options)
    : dataset_(dataset), options_(options) {}

absl::StatusOr<PackedSampler> PackedSampler::create(const DocumentSource* dataset,
                                                    const PackingOptions& options) {
  if (options.sequence_length < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("data.sequence_length must be >= 1, got ", options.sequence_length));
  }
  PackedSampler s(dataset, options);
  for (int64_t d = 0; d < dataset->num_documents(); ++d) {
    const int64_t n = dataset->document_tokens(d);
    s.doc_tokens_.push_back(n);
    s.total_tokens_ += n;
    if (options.loss_on_last_sequence) s.loss_from_.push_back(dataset->last_sequence_start(d));
  }
  const int64_t L = options.sequence_length;
  s.block_ = options.block_length > 0 ? options.block_length : L;
  if (s.block_ % L != 0) {
    return absl::InvalidArgumentError(absl::StrCat("packing: block length ", s.block_,
                                                   " is not a multiple of the sequence length ", L));
  }
  if (options.pose_target_length != 0 && options.pose_target_length < L) {
    return absl::InvalidArgumentError(absl::StrCat("data.pose_target_length (", options.pose_target_length,
                                                   ") must be >= data.sequence_length (", L, ")"));
  }
  if (s.total_tokens_ < (options.whole_documents ? 1 : s.block_ + 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        dataset->name(), ": ", s.total_tokens_, " tokens cannot fill one sample of ",
        options.whole_documents ? std::string("one document")
        : s.block_ == L
            ? absl::StrCat("data.sequence_length + 1 = ", L + 1, " tokens")
            : absl::StrCat("one block + 1 = ", s.block_ + 1,
                           " tokens (the blocks of a staged run span the least common multiple of its stages' "
                           "sequence lengths)")));
  }
  s.samples_per_epoch_ = (s.total_tokens_ - 1) / s.block_ * (s.block_ / L);
  if (options.whole_documents) {
    for (int64_t d = 0; d < dataset->num_documents(); ++d)
      if (s.doc_tokens_[static_cast<size_t>(d)] > 0) s.nonempty_.push_back(d);
    s.samples_per_epoch_ = static_cast<int64_t>(s.nonempty_.size());
  }
  return s;
}

void PackedSampler::prepare_epoch(int64_t epoch) {
  if (epoch == epoch_) return;
  epoch_ = epoch;
  const auto order = [&](int64_t n, uint64_t stream) {
    if (options_.shuffle) return seeded_permutation(n, options_.seed, stream);
    std::vector<int64_t> identity(static_cast<size_t>(n));
    std::iota(identity.begin(), identity.end(), int64_t{0});
    return identity;
  };
  doc_order_ = order(static_cast<int64_t>(doc_tokens_.size()), 2 * static_cast<uint64_t>(epoch));
  doc_start_.assign(doc_order_.size() + 1, 0);
  for (size_t i = 0; i < doc_order_.size(); ++i)
    doc_start_[i + 1] = doc_start_[i] + doc_tokens_[static_cast<size_t>(doc_order_[i])];
  // whole_documents: one block per document sample (block_ / L is 1 there).
  block_order_ = order(options_.whole_documents ? samples_per_epoch_ : (total_tokens_ - 1) / block_,
                       2 * static_cast<uint64_t>(epoch) + 1);
}

absl::Status PackedSampler::read_stream(int64_t start, int64_t count, std::vector<int32_t>& tokens,
                                        std::vector<int64_t>& doc_of_token) {
  tokens.resize(static_cast<size_t>(count));
  doc_of_token.resize(static_cast<size_t>(count));
  // First document overlapping `start` (skipping empty documents).
  size_t k = static_cast<size_t>(
      std::upper_bound(doc_start_.begin(), doc_start_.end(), start) - doc_start_.begin() - 1);
  int64_t filled = 0;
  while (filled < count) {
    ROTOR_CHECK_LT(k, doc_order_.size()) << "read past the epoch's stream";
    const int64_t doc = doc_order_[k];
    const int64_t offset = start + filled - doc_start_[k];  // offset inside this document
    const int64_t take = std::min(doc_tokens_[static_cast<size_t>(doc)] - offset, count - filled);
    if (take > 0) {
      if (absl::Status st = dataset_->read_document(doc, offset, take, tokens.data() + filled);
          !st.ok())
        return st;
      std::fill_n(doc_of_token.begin() + filled, take, static_cast<int64_t>(k));
      filled += take;
    }
    ++k;
  }
  return absl::OkStatus();
}

absl::StatusOr<PackedSample> PackedSampler::whole_document(int64_t doc) const {
  const int64_t L = options_.sequence_length;
  const int64_t n = std::min(doc_tokens_[static_cast<size_t>(doc)], L + 1);  // inputs and the last target
  std::vector<int32_t> tokens(static_cast<size_t>(n));
  ROTOR_RETURN_IF_ERROR(dataset_->read_document(doc, 0, n, tokens.data()));
  PackedSample s;
  s.ids.assign(static_cast<size_t>(L), 0);
  s.targets.assign(static_cast<size_t>(L), -1);
  s.positions.assign(static_cast<size_t>(L), 0);
  s.segments.assign(static_cast<size_t>(L), 1);
  const int64_t from = options_.loss_on_last_sequence ? loss_from_[static_cast<size_t>(doc)] : 0;
  for (int64_t t = 0; t < std::min(n, L); ++t) {
    s.ids[t] = tokens[static_cast<size_t>(t)];
    s.positions[t] = static_cast<int32_t>(t);
    s.segments[t] = 0;
    if (t + 1 < n && t + 1 >= from) s.targets[t] = tokens[static_cast<size_t>(t + 1)];
  }
  return s;
}

absl::StatusOr<PackedSample> PackedSampler::sample(int64_t index) {
  if (index < 0) return absl::InvalidArgumentError("sample index must be >= 0");
  prepare_epoch(index / samples_per_epoch_);
  const int64_t L = options_.sequence_length;
  const int64_t in_epoch = index % samples_per_epoch_;
  if (options_.whole_documents) {
    ROTOR_ASSIGN_OR_RETURN(PackedSample s,
                           whole_document(nonempty_[static_cast<size_t>(block_order_[static_cast<size_t>(in_epoch)])]));
    if (options_.pose_target_length > 0) {
      const int64_t n = std::count(s.segments.begin(), s.segments.end(), 0);  // the document's tokens
      pose_positions(s.positions, s.segments, n, options_.pose_target_length, options_.seed, index);
    }
    return s;
  }
  // Sample j of the epoch's stream: sample in_epoch % (B / L) of block
  // block_order_[in_epoch / (B / L)]; with B = L, j = block_order_[in_epoch].
  const int64_t per_block = block_ / L;
  const int64_t j = block_order_[static_cast<size_t>(in_epoch / per_block)] * per_block + in_epoch % per_block;
  std::vector<int32_t> tokens;
  std::vector<int64_t> doc;
  ROTOR_RETURN_IF_ERROR(read_stream(j * L, L + 1, tokens, doc));
  PackedSample s;
  s.ids.assign(tokens.begin(), tokens.begin() + L);
  s.targets.assign(tokens.begin() + 1, tokens.end());
  s.positions.resize(static_cast<size_t>(L));
  s.segments.assign(static_cast<size_t>(L), 0);
  int32_t segment = 0, position = 0;
  for (int64_t t = 0; t < L; ++t) {
    if (!options_.document_masking) {
      s.positions[t] = static_cast<int32_t>(t);
      continue;
    }
    if (t > 0 && doc[t] != doc[t - 1]) {
      ++segment;
      position = 0;
    }
    s.segments[t] = segment;
    s.positions[t] = position++;
    if (doc[t + 1] != doc[t]) s.targets[t] = -1;  // next token belongs to another document
  }
  if (options_.loss_on_last_sequence) {
    for (int64_t t = 0; t < L; ++t) {  // target t is stream token j L + t + 1
      const size_t k = static_cast<size_t>(doc[t + 1]);
      const int64_t offset = j * L + t + 1 - doc_start_[k];
      if (offset < loss_from_[static_cast<size_t>(doc_order_[k])]) s.targets[t] = -1;
    }
  }
  if (options_.pose_target_length > 0) pose_positions(s.positions, s.segments, L, options_.pose_target_length, options_.seed, index);
  return s;
}

void pose_positions(std::vector<int32_t>& positions, const std::vector<int32_t>& segments, int64_t length,
                    int64_t target_length, uint64_t seed, int64_t index) {
  // The sample's own stream of draws, apart from the shuffles' (seeded_permutation).
  const uint64_t stream = mix64(seed ^ mix64(static_cast<uint64_t>(index) + 0x9e3779b97f4a7c15ull));
  uint64_t draw = 0;
  for (int64_t begin = 0; begin < length;) {
    int64_t end = begin + 1;
    while (end < length && segments[static_cast<size_t>(end)] == segments[static_cast<size_t>(begin)]) ++end;
    const int64_t l = end - begin;
    // r1 in [1, (l + 1) / 2] and u in [0, N - l], as PoSE's random.randint (inclusive bounds).
    const int64_t half = (l + 1) / 2;
    const int64_t r1 = 1 + std::min(half - 1, static_cast<int64_t>(uniform01(stream, draw++) * half));
    const int64_t span = target_length - l + 1;
    const int64_t u = std::min(span - 1, static_cast<int64_t>(uniform01(stream, draw++) * span));
    for (int64_t t = begin + r1; t < end; ++t) positions[static_cast<size_t>(t)] += static_cast<int32_t>(u);
    begin = end;
  }
}

}  // namespace rotor
