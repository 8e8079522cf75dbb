#include "data/blend.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace rotor {

namespace {

// The dataset of the next blend sample: the largest deficit w_d * max(next, 1) - n_d.
size_t next_source(const std::vector<double>& weights, const std::vector<int64_t>& drawn, int64_t next) {
  const double scale = static_cast<double>(std::max<int64_t>(next, 1));
  size_t best = 0;
  double best_deficit = weights[0] * scale - static_cast<double>(drawn[0]);
  for (size_t d = 1; d < drawn.size(); ++d) {
    const double deficit = weights[d] * scale - static_cast<double>(drawn[d]);
    if (deficit > best_deficit) {
      best = d;
      best_deficit = deficit;
    }
  }
  return best;
}

std::vector<double> normalised(std::vector<double> weights) {
  double total = 0;
  for (double w : weights) total += w;
  for (double& w : weights) w /= total;
  return weights;
}

}  // namespace

std::vector<int64_t> blend_counts(const std::vector<double>& weights, int64_t n) {
  const std::vector<double> w = normalised(weights);
  std::vector<int64_t> drawn(w.size(), 0);
  for (int64_t i = 0; i < n; ++i) ++drawn[next_source(w, drawn, i)];
  return drawn;
}

absl::StatusOr<BlendedSampler> BlendedSampler::create(std::vector<PackedSampler> samplers,
                                                      std::vector<double> weights,
                                                      std::vector<int64_t> first_samples) {
  if (samplers.empty()) return absl::InvalidArgumentError("blend: no datasets");
  if (weights.size() != samplers.size()) {
    return absl::InvalidArgumentError(absl::StrCat("blend: ", weights.size(), " weights for ",
                                                   samplers.size(), " datasets"));
  }
  for (size_t d = 0; d < weights.size(); ++d) {
    if (!(weights[d] > 0)) {
      return absl::InvalidArgumentError(absl::StrCat("blend: weight of dataset ", d, " must be > 0, got ", weights[d]));
    }
  }
  if (!first_samples.empty() && first_samples.size() != samplers.size())
    return absl::InvalidArgumentError(absl::StrCat("blend: ", first_samples.size(), " first samples for ",
                                                   samplers.size(), " datasets"));
  BlendedSampler b;
  b.samplers_ = std::move(samplers);
  b.weights_ = normalised(std::move(weights));
  b.first_samples_ = first_samples.empty() ? std::vector<int64_t>(b.samplers_.size(), 0) : std::move(first_samples);
  b.drawn_.assign(b.samplers_.size(), 0);
  return b;
}

std::pair<int, int64_t> BlendedSampler::source(int64_t index) {
  if (index < next_) {  // replay from the start
    next_ = 0;
    std::fill(drawn_.begin(), drawn_.end(), 0);
  }
  while (true) {
    const size_t best = next_source(weights_, drawn_, next_);
    const int64_t number = drawn_[best]++;
    if (next_++ == index) return {static_cast<int>(best), number};
  }
}

absl::StatusOr<PackedSample> BlendedSampler::sample(int64_t index) {
  if (index < 0) return absl::InvalidArgumentError("blend: sample index must be >= 0");
  const auto [d, number] = source(index);
  return samplers_[static_cast<size_t>(d)].sample(first_samples_[static_cast<size_t>(d)] + number);
}

}  // namespace rotor
