#include "eval/heldout.h"

#include <algorithm>

#include "data/packing.h"
#include "eval/batch.h"
#include "kernels/reduce.h"
#include "kernels/status.h"

namespace rotor {

absl::StatusOr<HeldoutEval> heldout_eval(LlamaModel& model, const IndexedDataset& heldout, int64_t length,
                                         int64_t tokens, const ParallelContext& par) {
  absl::StatusOr<PackedSampler> s =
      PackedSampler::create(&heldout, {.sequence_length = length, .seed = 0, .shuffle = false});
  if (!s.ok()) return s.status();
  const int64_t windows = std::min(std::max<int64_t>(1, tokens / length), s->samples_per_epoch());
  std::vector<int64_t> mine;
  for (int64_t i = par.dp_rank(); i < windows; i += par.dp_size()) mine.push_back(i);
  const int64_t rows_per_pass = std::max<int64_t>(1, 16384 / length);
  LossSum total;
  const int64_t layers = model.config().num_hidden_layers;
  // Per layer, the entropy sum (on the model's device, so nothing is read
  // back per batch); and the number of rows summed, counted on the host.
  Tensor entropy = Tensor::zeros({layers}, DType::kF64, model.options().device);
  Tensor rows_summed = Tensor::zeros({1}, DType::kF64);
  for (size_t first = 0; first < mine.size(); first += static_cast<size_t>(rows_per_pass)) {
    const int64_t rows = std::min<int64_t>(rows_per_pass, static_cast<int64_t>(mine.size() - first));
    Batch b = empty_batch(rows, length, /*masking=*/false);
    for (int64_t i = 0; i < rows; ++i) {
      ROTOR_ASSIGN_OR_RETURN(PackedSample x, s->sample(mine[first + static_cast<size_t>(i)]));
      put_sample(b, i, x);
    }
    ForwardStats stats;
    stats.want_attention_entropy = true;
    const LossSum l = model.evaluate(shard_for_context(b, par), stats);
    total.sum += l.sum;
    total.count += l.count;
    for (int64_t layer = 0; layer < layers; ++layer)  // [B, Hq/tp, T] each
      sum_into(stats.attention_entropy[static_cast<size_t>(layer)], entropy.narrow(layer, 1));
    rows_summed.data<double>()[0] += static_cast<double>(stats.attention_entropy[0].numel());
  }
  total = sum_over(par.dp_cp, total);
  for (Tensor* t : {&entropy, &rows_summed}) {
    if (par.tp->size() > 1) par.tp->all_reduce(*t);  // the other heads
    if (par.dp_cp->size() > 1) par.dp_cp->all_reduce(*t);
  }
  HeldoutEval out;
  out.loss = total.mean();
  const double rows = rows_summed.item();
  const Tensor sums = entropy.to(Device::cpu());
  for (int64_t layer = 0; layer < layers; ++layer)
    out.layer_entropy.push_back(rows > 0 ? sums.item(layer) / rows : 0.0);
  return out;
}

}  // namespace rotor
