#include "trainer/data_stream.h"

#include <map>
#include <numeric>
#include <utility>

#include "absl/strings/str_cat.h"
#include "data/packing.h"
#include "kernels/random.h"
#include "model/llama.h"
#include "trainer/recipe/convert.h"
#include "kernels/status.h"

namespace rotor {

namespace {

// Dataset 0 keeps the recipe's seed; the others get their own shuffles.
uint64_t dataset_seed(const recipe::Recipe& r, size_t index) {
  const uint64_t seed = static_cast<uint64_t>(r.train().seed());
  return index == 0 ? seed : mix64(seed ^ mix64(index));
}

bool whole(const recipe::Dataset& d) { return d.packing() == recipe::Dataset::whole; }

}  // namespace

absl::StatusOr<std::vector<std::vector<DatasetStart>>> stage_data_starts(const std::vector<LoadedStage>& stages) {
  struct Path {
    uint64_t seed = 0;
    int64_t block = 1;     // concatenated: B; whole: unused
    int64_t position = 0;  // blocks (concatenated) or documents (whole) read so far
  };
  std::map<std::string, Path> paths;
  for (const LoadedStage& stage : stages) {
    const recipe::Recipe& r = stage.recipe.proto;
    for (int i = 0; i < r.data().datasets_size(); ++i) {
      const recipe::Dataset& d = r.data().datasets(i);
      auto [it, inserted] = paths.try_emplace(d.path());
      if (inserted) it->second.seed = dataset_seed(r, static_cast<size_t>(i));
      if (whole(d)) continue;
      it->second.block = std::lcm(it->second.block, r.data().sequence_length());
      if (it->second.block > (int64_t{1} << 40))
        return absl::InvalidArgumentError(absl::StrCat(
            "stage ", stage.name, ": ", d.path(), ": the sequence lengths of the stages that read it have no common "
            "multiple below 2^40 tokens (a dataset's blocks span them all; see trainer/data_stream.h)"));
    }
  }
  std::vector<std::vector<DatasetStart>> starts;
  for (const LoadedStage& stage : stages) {
    const recipe::Recipe& r = stage.recipe.proto;
    const int64_t len = r.data().sequence_length();
    std::vector<double> weights;
    for (const recipe::Dataset& d : r.data().datasets()) weights.push_back(d.weight());
    const std::vector<int64_t> counts = blend_counts(weights, stage.steps * BatchShape::of(r).global);
    std::vector<DatasetStart> stage_starts;
    for (int i = 0; i < r.data().datasets_size(); ++i) {
      const recipe::Dataset& d = r.data().datasets(i);
      Path& p = paths[d.path()];
      const int64_t count = counts[static_cast<size_t>(i)];
      if (whole(d)) {
        stage_starts.push_back({.seed = p.seed, .block_length = 0, .first_sample = p.position});
        p.position += count;
      } else {
        const int64_t per_block = p.block / len;
        stage_starts.push_back({.seed = p.seed, .block_length = p.block, .first_sample = p.position * per_block});
        p.position += (count + per_block - 1) / per_block;  // a block begun is a block read
      }
    }
    starts.push_back(std::move(stage_starts));
  }
  return starts;
}

absl::StatusOr<DataStream> open_stream(const recipe::Recipe& r, const std::vector<DatasetStart>& starts) {
  DataStream s;
  std::vector<PackedSampler> samplers;
  std::vector<double> weights;
  std::vector<int64_t> first_samples;
  for (int i = 0; i < r.data().datasets_size(); ++i) {
    const recipe::Dataset& d = r.data().datasets(i);
    const DatasetStart start = starts.empty() ? DatasetStart{.seed = dataset_seed(r, static_cast<size_t>(i))}
                                              : starts[static_cast<size_t>(i)];
    // A Megatron dataset prefix or llm.c shards (a file or a glob): data/documents.h.
    ROTOR_ASSIGN_OR_RETURN(std::unique_ptr<DocumentSource> ds, open_documents(d.path(), document_format(d)));
    s.datasets.push_back(std::move(ds));
    absl::StatusOr<PackedSampler> sampler = PackedSampler::create(
        s.datasets.back().get(), {.sequence_length = r.data().sequence_length(),
                                  .seed = start.seed,
                                  .document_masking = r.data().document_masking(),
                                  .loss_on_last_sequence = d.loss() == recipe::Dataset::last_sequence,
                                  .whole_documents = whole(d),
                                  .block_length = start.block_length,
                                  .pose_target_length = r.data().pose_target_length()});
    if (!sampler.ok()) return with_context(sampler.status(), absl::StrCat(d.path(), ": "));
    samplers.push_back(std::move(*sampler));
    weights.push_back(d.weight());
    first_samples.push_back(start.first_sample);
  }
  absl::StatusOr<BlendedSampler> blend =
      BlendedSampler::create(std::move(samplers), std::move(weights), std::move(first_samples));
  if (!blend.ok()) return blend.status();
  s.blend = std::make_unique<BlendedSampler>(std::move(*blend));
  return s;
}

absl::StatusOr<Batch> make_batch(DataStream& stream, int64_t first, int64_t count, int64_t len, bool masking) {
  Batch b = empty_batch(count, len, masking);
  for (int64_t r = 0; r < count; ++r) {
    ROTOR_ASSIGN_OR_RETURN(PackedSample s, stream.sample(first + r));
    put_sample(b, r, s);
  }
  return b;
}

BatchShape BatchShape::of(const recipe::Recipe& r) {
  const int64_t len = r.data().sequence_length();
  return {.sequence_length = len,
          .global = r.train().has_global_batch_tokens() ? r.train().global_batch_tokens() / len
                                                        : r.train().global_batch_size(),
          .micro = r.train().micro_batch_size(),
          .document_masking = r.data().document_masking()};
}

absl::StatusOr<std::vector<Batch>> step_batches(DataStream& stream, const BatchShape& shape, int64_t step,
                                                const ParallelContext& par) {
  const int64_t per_rank = shape.global / par.dp_size();
  const int64_t first = (step - 1) * shape.global + par.dp_rank() * per_rank;
  std::vector<Batch> batches;
  for (int64_t m = 0; m < per_rank; m += shape.micro) {
    ROTOR_ASSIGN_OR_RETURN(Batch b, make_batch(stream, first + m, shape.micro, shape.sequence_length, shape.document_masking));
    batches.push_back(shard_for_context(b, par));
  }
  return batches;
}

}  // namespace rotor
