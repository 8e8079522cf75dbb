// Blending packed datasets by weight, as Megatron-LM does (its
// build_blending_indices): exact proportions, deterministic, no randomness.
//
// Blend sample i comes from the dataset d with the largest deficit
//   w_d * max(i, 1) - n_d(i)
// (w normalised to sum 1, n_d(i) the samples already drawn from d; ties go to
// the lower index) and is that dataset's sample number n_d(i). So after any
// prefix of i samples, dataset d has supplied w_d * i samples up to less than
// one, each dataset is read in its own shuffled order (PackedSampler) without
// skipping or repeating within an epoch, and sample i is a function of
// (datasets, weights, i) only: a resumed run needs nothing but i.
//
// Sequential access costs O(datasets) per sample; asking for an earlier index
// replays from 0 (O(i * datasets), milliseconds for millions of samples).
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "data/packing.h"

namespace rotor {

class BlendedSampler {
 public:
  // Errors: no samplers, a weight count that differs, a weight <= 0.
  // `first_samples` (empty: all 0): dataset d's sample number n is its
  // sampler's sample first_samples[d] + n (a stage that goes on where the
  // previous one stopped, trainer/data_stream.h).
  static absl::StatusOr<BlendedSampler> create(std::vector<PackedSampler> samplers,
                                               std::vector<double> weights,
                                               std::vector<int64_t> first_samples = {});

  // Blend sample `index` (>= 0).
  absl::StatusOr<PackedSample> sample(int64_t index);
  // Which dataset blend sample `index` comes from, and its sample number there.
  std::pair<int, int64_t> source(int64_t index);

 private:
  BlendedSampler() = default;
  std::vector<PackedSampler> samplers_;
  std::vector<int64_t> first_samples_;
  std::vector<double> weights_;  // normalised
  std::vector<int64_t> drawn_;   // n_d(next_)
  int64_t next_ = 0;             // the next blend index to assign
};

// How many of blend samples [0, n) each dataset supplies (n_d(n) above), for
// weights `weights` (> 0, any scale).
std::vector<int64_t> blend_counts(const std::vector<double>& weights, int64_t n);

}  // namespace rotor
