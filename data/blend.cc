#include "data/blend.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace rotor {

absl::StatusOr<BlendedSampler> BlendedSampler::create(std::vector<PackedSampler> samplers,
                                                      std::vector<double> weights) {
  if (samplers.empty()) return absl::InvalidArgumentError("blend: no datasets");
  if (weights.size() != samplers.size()) {
    return absl::InvalidArgumentError(absl::StrCat("blend: ", weights.size(), " weights for ",
                                                   samplers.size(), " datasets"));
  }
  double total = 0;
  for (size_t d = 0; d < weights.size(); ++d) {
    if (!(weights[d] > 0)) {
      return absl::InvalidArgumentError(absl::StrCat("blend: weight of dataset ", d, " must be > 0, got ", weights[d]));
    }
    total += weights[d];
  }
  BlendedSampler b;
  b.samplers_ = std::move(samplers);
  b.weights_ = std::move(weights);
  for (double& w : b.weights_) w /= total;
  b.drawn_.assign(b.samplers_.size(), 0);
  return b;
}

std::pair<int, int64_t> BlendedSampler::source(int64_t index) {
  if (index < next_) {  // replay from the start
    next_ = 0;
    std::fill(drawn_.begin(), drawn_.end(), 0);
  }
  while (true) {
    const double scale = static_cast<double>(std::max<int64_t>(next_, 1));
    size_t best = 0;
    double best_deficit = weights_[0] * scale - static_cast<double>(drawn_[0]);
    for (size_t d = 1; d < drawn_.size(); ++d) {
      const double deficit = weights_[d] * scale - static_cast<double>(drawn_[d]);
      if (deficit > best_deficit) {
        best = d;
        best_deficit = deficit;
      }
    }
    const int64_t number = drawn_[best]++;
    if (next_++ == index) return {static_cast<int>(best), number};
  }
}

absl::StatusOr<PackedSample> BlendedSampler::sample(int64_t index) {
  if (index < 0) return absl::InvalidArgumentError("blend: sample index must be >= 0");
  const auto [d, number] = source(index);
  return samplers_[static_cast<size_t>(d)].sample(number);
}

}  // namespace rotor
