#include "trainer/data_stream.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "data/packing.h"
#include "kernels/random.h"
#include "model/llama.h"
#include "trainer/recipe/convert.h"
#include "kernels/status.h"

namespace rotor {

absl::StatusOr<DataStream> open_stream(const recipe::Recipe& r) {
  DataStream s;
  const uint64_t seed = static_cast<uint64_t>(r.train().seed());
  std::vector<PackedSampler> samplers;
  std::vector<double> weights;
  for (const recipe::Dataset& d : r.data().datasets()) {
    // A Megatron dataset prefix or llm.c shards (a file or a glob): data/documents.h.
    ROTOR_ASSIGN_OR_RETURN(std::unique_ptr<DocumentSource> ds, open_documents(d.path(), document_format(d)));
    s.datasets.push_back(std::move(ds));
    // Dataset 0 keeps the recipe's seed; the others get their own shuffles.
    const uint64_t dataset_seed = samplers.empty() ? seed : mix64(seed ^ mix64(samplers.size()));
    absl::StatusOr<PackedSampler> sampler = PackedSampler::create(
        s.datasets.back().get(), {.sequence_length = r.data().sequence_length(),
                                  .seed = dataset_seed,
                                  .document_masking = r.data().document_masking(),
                                  .loss_on_last_sequence = d.loss() == recipe::Dataset::last_sequence,
                                  .whole_documents = d.packing() == recipe::Dataset::whole});
    if (!sampler.ok()) return with_context(sampler.status(), absl::StrCat(d.path(), ": "));
    samplers.push_back(std::move(*sampler));
    weights.push_back(d.weight());
  }
  absl::StatusOr<BlendedSampler> blend = BlendedSampler::create(std::move(samplers), std::move(weights));
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
