// The training data of a recipe: each dataset of data.datasets packed into
// sequences and shuffled (data/packing.h), the datasets blended in exact
// proportion to their weights (data/blend.h, Megatron's scheme), so sample i
// of the run is a function of (recipe, i) and resuming needs only the step.
// Step s (1-based) takes samples [(s - 1) * G, s * G) for a global batch of G
// sequences.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "data/blend.h"
#include "data/documents.h"
#include "eval/batch.h"
#include "parallel/context.h"
#include "trainer/recipe/recipe.pb.h"

namespace rotor {

// The training stream: the recipe's datasets, each packed and shuffled with
// its own seed (dataset 0 the recipe's train.seed), blended by weight.
struct DataStream {
  std::vector<std::unique_ptr<DocumentSource>> datasets;  // outlive the samplers
  std::unique_ptr<BlendedSampler> blend;

  absl::StatusOr<PackedSample> sample(int64_t index) { return blend->sample(index); }
};

absl::StatusOr<DataStream> open_stream(const recipe::Recipe& r);

// Stacks samples [first, first + count) of the stream into a [count, len] batch.
absl::StatusOr<Batch> make_batch(DataStream& stream, int64_t first, int64_t count, int64_t len, bool masking);

// The shape of every step's batch (data.sequence_length,
// train.global_batch_tokens / sequence_length or train.global_batch_size,
// train.micro_batch_size, data.document_masking).
struct BatchShape {
  int64_t sequence_length = 0;
  int64_t global = 0;  // sequences per step, over every rank
  int64_t micro = 0;   // sequences per micro-batch
  bool document_masking = false;

  static BatchShape of(const recipe::Recipe& r);
};

// This rank's micro-batches of `step`: dp rank d takes global / dp sequences
// from (step - 1) * global + d * global / dp on, in micro-batches of `micro`
// rows; each is this cp rank's zigzag shard of them (shard_for_context).
// global must be a multiple of dp * micro.
absl::StatusOr<std::vector<Batch>> step_batches(DataStream& stream, const BatchShape& shape, int64_t step,
                                                const ParallelContext& par);

}  // namespace rotor
