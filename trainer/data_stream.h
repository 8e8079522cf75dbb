// The training data of a recipe: each dataset of data.datasets packed into
// sequences and shuffled (data/packing.h), the datasets blended in exact
// proportion to their weights (data/blend.h, Megatron's scheme), so sample i
// of the run is a function of (recipe, i) and resuming needs only the step.
// Step s (1-based) takes samples [(s - 1) * G, s * G) for a global batch of G
// sequences.
//
// Stages (trainer/recipe/recipe.h): each stage's stream is its own recipe's
// blend, every dataset starting where the earlier stages left it
// (stage_data_starts), so the data goes on instead of starting over:
//   - a dataset's shuffles keep one seed over the run: that of its index in
//     the first stage that lists it (dataset 0: train.seed, dataset i:
//     mix64(seed ^ mix64(i)), as without stages);
//   - a concatenated dataset is cut in blocks of B = the least common
//     multiple of the sequence lengths of the stages that read it
//     (data/packing.h), so a stage that ends inside a block leaves the rest
//     of that block (< B tokens) unread and the next stage starts at the next
//     block, at whatever length: within an epoch no token is read twice;
//   - a whole-document dataset goes on at its next document;
//   - how many samples a dataset supplied in a stage is blend_counts of the
//     stage's weights over its steps x global batch (data/blend.h).
// So stage k's stream, like a single stage's, is a function of (recipe, k,
// index): resuming anywhere needs only the step.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "data/blend.h"
#include "data/documents.h"
#include "eval/batch.h"
#include "parallel/context.h"
#include "trainer/recipe/recipe.h"
#include "trainer/recipe/recipe.pb.h"

namespace rotor {

// The training stream: the recipe's datasets, each packed and shuffled with
// its own seed (dataset 0 the recipe's train.seed), blended by weight.
struct DataStream {
  std::vector<std::unique_ptr<DocumentSource>> datasets;  // outlive the samplers
  std::unique_ptr<BlendedSampler> blend;

  absl::StatusOr<PackedSample> sample(int64_t index) { return blend->sample(index); }
};

// Where one dataset of a stage's blend starts.
struct DatasetStart {
  uint64_t seed = 0;          // its shuffles' seed
  int64_t block_length = 0;   // PackingOptions::block_length (0: the sequence length)
  int64_t first_sample = 0;   // its first sample, in the stage's samples
};

// For each stage, a DatasetStart per dataset of its data.datasets (see above).
// Errors: a block length past 2^40 tokens (sequence lengths without a
// reasonable common multiple).
absl::StatusOr<std::vector<std::vector<DatasetStart>>> stage_data_starts(const std::vector<LoadedStage>& stages);

// The recipe's blend; `starts` (empty: every dataset from its first sample,
// seeds as above, blocks of one sequence) from stage_data_starts.
absl::StatusOr<DataStream> open_stream(const recipe::Recipe& r, const std::vector<DatasetStart>& starts = {});

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
