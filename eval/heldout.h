// The cheap evaluation during training: held-out loss at one length and the
// mean attention entropy of each layer (over heads and query rows; computed in
// the attention kernel, ring-merged under cp, summed over tp heads and dp x cp).
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "data/indexed_dataset.h"
#include "model/llama.h"
#include "parallel/context.h"

namespace rotor {

struct HeldoutEval {
  double loss = 0;
  std::vector<double> layer_entropy;  // [layers]
};

// Mean held-out loss per token at `length`: the first `tokens` tokens of the
// held-out stream (documents in dataset order, no shuffling, no document
// masking) in windows of `length`, several windows per forward pass. With
// parallelism, window i is evaluated by dp rank i % dp, each window sharded
// over cp like training; the sums are added over dp_cp. Collective over the
// model's layout.
absl::StatusOr<HeldoutEval> heldout_eval(LlamaModel& model, const IndexedDataset& heldout, int64_t length,
                                         int64_t tokens, const ParallelContext& par);

}  // namespace rotor
