#include "trainer/train.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "data/blend.h"
#include "data/documents.h"
#include "data/indexed_dataset.h"
#include "data/packing.h"
#include "eval/batch.h"
#include "eval/heldout.h"
#include "kernels/elementwise.h"
#include "kernels/random.h"
#include "model/llama.h"
#include "trainer/checkpoint.h"
#include "trainer/fault_injection.h"
#include "trainer/optimizer.h"
#include "trainer/recipe/convert.h"
#include "trainer/tensorboard.h"
#include "parallel/world.h"
#include "parallel/context.h"
#include "parallel/data_parallel.h"
#include "parallel/zero.h"
#include "parallel/ring_attention.h"

namespace rotor {

namespace fs = std::filesystem;

double schedule_lr(const recipe::TrainSection& t, int64_t step) {
  const double lr = t.lr(), min_lr = t.min_lr();
  const int64_t warmup = t.warmup_steps(), total = t.steps();
  if (warmup > 0 && step <= warmup) return lr * static_cast<double>(step) / static_cast<double>(warmup);
  if (t.schedule() == recipe::TrainSection::constant || total <= warmup) return lr;
  const double progress =
      std::min(1.0, static_cast<double>(step - warmup) / static_cast<double>(total - warmup));
  const double shape = t.schedule() == recipe::TrainSection::linear
                           ? 1.0 - progress
                           : 0.5 * (1.0 + std::cos(M_PI * progress));
  return min_lr + (lr - min_lr) * shape;
}

namespace {

// The training stream: the recipe's datasets, each packed and shuffled with
// its own seed, blended by weight (data/blend.h).
struct DataStream {
  std::vector<std::unique_ptr<DocumentSource>> datasets;  // outlive the samplers
  std::unique_ptr<BlendedSampler> blend;

  absl::StatusOr<PackedSample> sample(int64_t index) { return blend->sample(index); }
};

absl::StatusOr<DataStream> open_stream(const recipe::Recipe& r) {
  DataStream s;
  const uint64_t seed = static_cast<uint64_t>(r.train().seed());
  std::vector<PackedSampler> samplers;
  std::vector<double> weights;
  for (const recipe::Dataset& d : r.data().datasets()) {
    absl::StatusOr<std::unique_ptr<DocumentSource>> ds = open_documents(d.path(), document_format(d));
    if (!ds.ok()) return ds.status();
    s.datasets.push_back(*std::move(ds));
    // Dataset 0 keeps the recipe's seed; the others get their own shuffles.
    const uint64_t dataset_seed = samplers.empty() ? seed : mix64(seed ^ mix64(samplers.size()));
    absl::StatusOr<PackedSampler> sampler = PackedSampler::create(
        s.datasets.back().get(), {.sequence_length = r.data().sequence_length(),
                                  .seed = dataset_seed,
                                  .document_masking = r.data().document_masking()});
    if (!sampler.ok()) return absl::Status(sampler.status().code(), absl::StrCat(d.path(), ": ", sampler.status().message()));
    samplers.push_back(std::move(*sampler));
    weights.push_back(d.has_weight() ? d.weight() : 1.0);
  }
  absl::StatusOr<BlendedSampler> blend = BlendedSampler::create(std::move(samplers), std::move(weights));
  if (!blend.ok()) return blend.status();
  s.blend = std::make_unique<BlendedSampler>(std::move(*blend));
  return s;
}



std::vector<Tensor> gradients_of(const std::vector<Parameter>& params) {
  std::vector<Tensor> g;
  for (const Parameter& p : params) g.push_back(p.grad);
  return g;
}


// Stacks samples [first, first + count) of the stream into a [count, L] batch.
absl::StatusOr<Batch> make_batch(DataStream& stream, int64_t first, int64_t count, int64_t len,
                                 bool masking) {
  Batch b = empty_batch(count, len, masking);
  for (int64_t r = 0; r < count; ++r) {
    absl::StatusOr<PackedSample> s = stream.sample(first + r);
    if (!s.ok()) return s.status();
    put_sample(b, r, *s);
  }
  return b;
}


// Keeps the records of steps <= `last_step` (a resumed run logs the later ones again).
absl::Status truncate_metrics(const fs::path& path, int64_t last_step) {
  std::ifstream in(path);
  if (!in) return absl::OkStatus();
  std::string kept, line;
  while (std::getline(in, line)) {
    const nlohmann::json rec = nlohmann::json::parse(line, nullptr, false);
    if (!rec.is_discarded() && rec.value("step", int64_t{0}) <= last_step) kept += line + "\n";
  }
  in.close();
  // Through a temporary file and a rename: a kill here keeps every record.
  const fs::path tmp = path.string() + ".tmp";
  if (absl::Status s = write_text(tmp, kept); !s.ok()) return s;
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) return absl::DataLossError(absl::StrCat("rename ", tmp.string(), ": ", ec.message()));
  return absl::OkStatus();
}

// AdamW, either whole on every rank (AdamWOptimizer) or with its moments
// sharded over dp (ZeRO-1, parallel/zero.h, recipe parallel.zero1). Both give
// the same parameters; checkpoints hold the whole moments either way.
class Optimizer {
 public:
  Optimizer(const std::vector<Parameter>& params, const AdamWHyper& hyper, Communicator* zero_dp)
      : hyper_(hyper) {
    if (zero_dp != nullptr && zero_dp->size() > 1) zero_.emplace(params, hyper, zero_dp);
    else adam_.emplace(params, hyper);
  }

  // `grad_norm`: global_grad_norm(params, tp), computed once by the caller.
  OptimizerStepInfo step(std::vector<Parameter>& params, double lr, double clip, double grad_norm) {
    if (adam_) return adam_->step_with_norm(params, lr, clip, grad_norm);
    const ZeroStepInfo z = zero_->step(params, lr, clip, grad_norm);
    return {z.grad_norm, z.clip_scale};
  }

  // Collective (tp gathers; ZeRO-1 also gathers the moments over dp).
  CheckpointTensors checkpoint_tensors(const std::vector<Parameter>& params, Communicator* tp) const {
    if (adam_) return rotor::checkpoint_tensors(params, *adam_, tp);
    AdamWOptimizer whole(params, hyper_);  // only while saving
    const FullMoments m = zero_->gather_moments();
    for (size_t i = 0; i < params.size(); ++i) {
      whole.first_moment(i).copy_from(m.first[i]);
      whole.second_moment(i).copy_from(m.second[i]);
    }
    whole.restore_steps_taken(zero_->steps_taken());
    return rotor::checkpoint_tensors(params, whole, tp);
  }

  absl::StatusOr<CheckpointInfo> load(const std::string& dir, std::vector<Parameter>& params, int tp_rank) {
    if (adam_) return load_checkpoint(dir, params, &*adam_, tp_rank);
    AdamWOptimizer whole(params, hyper_);
    absl::StatusOr<CheckpointInfo> info = load_checkpoint(dir, params, &whole, tp_rank);
    if (!info.ok()) return info;
    std::vector<Tensor> first, second;
    for (size_t i = 0; i < params.size(); ++i) {
      first.push_back(whole.first_moment(i));
      second.push_back(whole.second_moment(i));
    }
    zero_->load_moments(first, second);
    zero_->restore_steps_taken(whole.steps_taken());
    return info;
  }

 private:
  AdamWHyper hyper_;
  std::optional<AdamWOptimizer> adam_;
  std::optional<ShardedAdamW> zero_;
};

// World-wide maximum of a small integer (every rank calls it).
int64_t max_over(Communicator& world, int64_t v) {
  Tensor t = Tensor::from_vector({static_cast<double>(v)}, {1}, DType::kF64);
  world.all_reduce(t, ReduceOp::kMax);
  return static_cast<int64_t>(t.item());
}

// "layer <l>" of an HF parameter name model.layers.<l>.*, else the name.
std::string layer_of(const std::string& name) {
  const std::string prefix = "model.layers.";
  if (name.rfind(prefix, 0) != 0) return name;
  return "layer " + name.substr(prefix.size(), name.find('.', prefix.size()) - prefix.size());
}

// Where a non-finite loss or gradient came from, for the log, over every
// rank: the first point of the residual stream whose activations hold NaN or
// inf (found by running the step's micro-batches forward again); when the
// forward pass is finite, the parameter whose gradient went non-finite first
// in backward order (the highest layer: below it the NaN has spread); and the
// first weight holding NaN or inf, if any. Collective over the world (the
// forward passes over tp and cp too).
std::string locate_nonfinite(LlamaModel& model, const std::vector<Batch>& batches, Communicator& world) {
  const std::vector<Parameter>& params = model.parameters();
  const int64_t n = static_cast<int64_t>(params.size());
  int64_t weight = n, grad = -1;  // first weight, last gradient (parameter order)
  for (int64_t i = 0; i < n; ++i) {
    if (weight == n && !std::isfinite(squared_norm(params[i].value))) weight = i;
    if (!std::isfinite(squared_norm(params[i].grad))) grad = i;
  }
  weight = n - max_over(world, n - weight);  // the minimum over ranks
  grad = max_over(world, grad);
  const int64_t layers = model.config().num_hidden_layers;
  int64_t residual = layers + 1;  // none
  for (const Batch& b : batches) {
    model.forward(b);
    const int64_t r = model.first_nonfinite_residual();
    if (r >= 0) residual = std::min(residual, r);
  }
  residual = layers + 1 - max_over(world, layers + 1 - residual);
  std::string out;
  if (residual == 0) {
    out = "first non-finite activation: the embedding output";
  } else if (residual <= layers) {
    out = absl::StrCat("first non-finite activation: the output of layer ", residual - 1);
  } else {
    out = "the forward pass is finite; first non-finite gradient (backward order): ";
    if (grad < 0) {
      out += "none";
    } else {
      out += params[grad].name;
      if (const std::string layer = layer_of(params[grad].name); layer != params[grad].name)
        absl::StrAppend(&out, " (", layer, ")");
    }
  }
  if (weight < n) absl::StrAppend(&out, "; weights: ", params[weight].name, " holds NaN or inf");
  return out;
}

std::string duration(double seconds) {
  const int64_t s = static_cast<int64_t>(seconds);
  return absl::StrFormat("%dm%02ds", s / 60, s % 60);
}

}  // namespace

absl::Status train(const LoadedRecipe& loaded, std::ostream& rank0_out, Communicator& world,
                   FaultPlan* faults) {
  FaultPlan no_faults;
  if (faults == nullptr) faults = &no_faults;
  const recipe::Recipe& r = loaded.proto;
  if (r.device() == recipe::Recipe::cuda) {
    return absl::UnimplementedError("device: cuda is not available yet (CUDA backend: issue 7)");
  }
  // The process grid (a duplicate of the world, so that sweeps can make one per run).
  absl::StatusOr<std::unique_ptr<ProcessGrid>> grid = ProcessGrid::create(
      world.split(0, world.rank(), "world"), static_cast<int>(r.parallel().tp()),
      static_cast<int>(r.parallel().cp()));
  if (!grid.ok()) return grid.status();
  const bool sequence_parallel =
      !r.parallel().has_sequence_parallel() || r.parallel().sequence_parallel();
  const ParallelContext par = ParallelContext::of(**grid, sequence_parallel);
  const bool rank0 = world.rank() == 0;
  std::ostringstream discard;
  std::ostream& out = rank0 ? rank0_out : discard;
  const bool init_from = !r.model().init_from().empty();
  if (init_from && (!loaded.head_dim_known || !r.model().has_hidden_size())) {
    // Reading sizes from the source checkpoint's config comes with HF import (issue 5).
    return absl::UnimplementedError(
        "model.init_from currently needs the model sizes in the recipe too (inherit them from "
        "the base model's recipe with base:)");
  }
  const std::string run_dir = r.run().dir();
  std::error_code ec;
  fs::create_directories(run_dir, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat(run_dir, ": ", ec.message()));
  const std::string recipe_yaml = recipe_to_yaml(r);
  if (rank0) std::ofstream(fs::path(run_dir) / "recipe.yaml") << recipe_yaml;

  LlamaOptions opts = loaded.model_options();
  opts.recompute = r.train().recompute();
  opts.parallel = par;
  absl::StatusOr<LlamaModel> model = LlamaModel::create(loaded.model, opts);
  if (!model.ok()) return model.status();
  model->init_weights(static_cast<uint64_t>(r.train().seed()));
  const AdamWHyper hyper{.lr = r.train().lr(), .beta1 = r.train().beta1(),
                         .beta2 = r.train().beta2(), .eps = 1e-8,
                         .weight_decay = r.train().weight_decay()};
  Optimizer opt(model->parameters(), hyper, r.parallel().zero1() ? par.dp : nullptr);

  absl::StatusOr<DataStream> stream = open_stream(r);
  if (!stream.ok()) return stream.status();
  std::unique_ptr<IndexedDataset> heldout;
  if (!r.data().heldout().empty()) {
    absl::StatusOr<IndexedDataset> h = IndexedDataset::open(r.data().heldout());
    if (!h.ok()) return h.status();
    heldout = std::make_unique<IndexedDataset>(std::move(*h));
  }

  const int64_t len = r.data().sequence_length();
  const int64_t global = r.train().has_global_batch_tokens() ? r.train().global_batch_tokens() / len
                                                             : r.train().global_batch_size();
  const int64_t micro = r.train().micro_batch_size();
  const int64_t steps = r.train().steps();
  // Checks that need the world size. Each dp rank takes global / dp sequences
  // of every step, cut into micro-batches; each cp rank of it a shard of them.
  const int64_t dp = par.dp_size();
  if (global % (dp * micro) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the global batch (", global, " sequences) must be a multiple of data-parallel size (", dp,
        " = world ", world.size(), " / (tp ", r.parallel().tp(), " * cp ", r.parallel().cp(),
        ")) * train.micro_batch_size (", micro, ")"));
  }
  const int64_t per_rank = global / dp;
  GradientReducer reducer(gradients_of(model->parameters()), par.dp_cp);

  int64_t start = 0;
  // Resume from the newest checkpoint that verifies on every rank; one that
  // does not (a flipped byte, a truncated file) is reported by name and the
  // previous one is tried. None usable: an error, never a silent fresh start.
  const std::vector<std::string> candidates = resume_candidates(run_dir);
  std::string resumed_from, unusable;
  for (const std::string& dir : candidates) {
    absl::StatusOr<CheckpointInfo> info = opt.load(dir, model->parameters(), par.tp_rank());
    // Every rank takes the same one: a failure on any rank rejects it.
    const std::string why = info.ok() ? "" : std::string(info.status().message());
    if (max_over((*grid)->world(), info.ok() ? 0 : 1) == 0) {
      start = info->step;
      resumed_from = dir;
      break;
    }
    out << "rotor train: checkpoint " << dir << " is unusable"
        << (why.empty() ? " on another rank" : ": " + why) << "; trying the previous one\n";
    absl::StrAppend(&unusable, "\n  ", dir, ": ", why.empty() ? "unusable on another rank" : why);
  }
  if (!candidates.empty() && resumed_from.empty()) {
    return absl::DataLossError(absl::StrCat("no usable checkpoint in ", run_dir, "/checkpoints:", unusable));
  }
  if (!resumed_from.empty()) {
    out << "resumed from " << resumed_from << " (step " << start << ")\n";
    // Steps after the checkpoint that a killed run had logged are logged again below.
    if (rank0) {
      if (absl::Status s = truncate_metrics(fs::path(run_dir) / "metrics.jsonl", start); !s.ok()) return s;
    }
  } else if (init_from) {
    // Continual pretraining: the weights of another run's checkpoint (a
    // checkpoint directory, or a run directory whose latest is taken); fresh
    // optimizer state and schedule.
    std::string source = r.model().init_from();
    if (!fs::exists(fs::path(source) / "state.json")) {
      absl::StatusOr<std::string> l = latest_checkpoint(source);
      if (!l.ok()) return l.status();
      if (l->empty()) {
        return absl::NotFoundError(absl::StrCat(
            "model.init_from: ", source, " is neither a checkpoint directory nor a run with checkpoints"));
      }
      source = *l;
    }
    absl::StatusOr<CheckpointInfo> info = load_checkpoint(source, model->parameters(), nullptr, par.tp_rank());
    if (!info.ok()) return absl::Status(info.status().code(), absl::StrCat("model.init_from: ", info.status().message()));
    out << "initialised from " << source << " (its step " << info->step << ")\n";
  }
  // Rank 0 writes the metrics and TensorBoard events; one events file per (re)start.
  std::ofstream metrics;
  std::optional<TensorBoardWriter> tb;
  if (rank0) {
    metrics.open(fs::path(run_dir) / "metrics.jsonl", std::ios::app);
    absl::StatusOr<TensorBoardWriter> w = TensorBoardWriter::open((fs::path(run_dir) / "tb").string());
    if (!w.ok()) return w.status();
    tb = std::move(*w);
  }
  const double flops_per_token = loaded.model.training_flops_per_token(len);
  // The device's peak for MFU: the recipe's run.peak_tflops; none is assumed on the CPU.
  const double peak_tflops = r.run().has_peak_tflops() ? r.run().peak_tflops() : 0.0;
  const int64_t log_every = r.run().has_log_interval() ? r.run().log_interval() : 1;
  const bool skip_nonfinite = r.train().on_nonfinite() == recipe::TrainSection::skip;
  const int64_t max_skips = r.train().max_skipped_steps();
  int64_t skipped_in_row = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t step = start + 1; step <= steps; ++step) {
    if (absl::Status s = faults->at_step_start(step, world.rank()); !s.ok()) return s;
    const auto ts = std::chrono::steady_clock::now();
    std::vector<Batch> batches;
    int64_t counted = 0;
    const int64_t first = (step - 1) * global + par.dp_rank() * per_rank;
    for (int64_t m = 0; m < per_rank; m += micro) {
      absl::StatusOr<Batch> b = make_batch(*stream, first + m, micro, len, r.data().document_masking());
      if (!b.ok()) return b.status();
      Batch local = shard_for_context(*b, par);
      for (int64_t i = 0; i < local.targets.numel(); ++i) counted += local.targets.data<int32_t>()[i] >= 0;
      batches.push_back(std::move(local));
    }
    // The loss is the sum of token losses over every rank / the tokens counted
    // over every rank; a rank with no counted token adds zero.
    counted = sum_over(par.dp_cp, LossSum{0, counted}).count;
    if (counted == 0) return absl::DataLossError(absl::StrCat("step ", step, ": no counted target tokens"));
    model->zero_grad();
    faults->before_forward(step, *model);
    LossSum loss;
    for (const Batch& b : batches) {
      const LossSum l = model->forward_backward(b, 1.0 / static_cast<double>(counted));
      loss.sum += l.sum;
      loss.count += l.count;
    }
    loss = sum_over(par.dp_cp, loss);
    reducer.reduce();
    faults->after_backward(step, *model);
    const double lr = schedule_lr(r.train(), step);
    // Non-finite loss or gradients (the same values on every rank after the
    // reductions): the update is never applied. The recipe's
    // train.on_nonfinite chooses stopping (default) or skipping the step
    // (at most train.max_skipped_steps in a row); either way the event is
    // logged with where the values first went non-finite.
    const double grad_norm = global_grad_norm(model->parameters(), par.tp);
    std::string nonfinite;
    if (!std::isfinite(loss.mean()) || !std::isfinite(grad_norm)) {
      nonfinite = absl::StrCat("step ", step, ": non-finite ",
                               std::isfinite(loss.mean()) ? "" : absl::StrCat("loss (", loss.mean(), ") and "),
                               "gradient norm (", grad_norm, "); ",
                               locate_nonfinite(*model, batches, (*grid)->world()));
    }
    faults->restore_weights();
    OptimizerStepInfo info;
    if (!nonfinite.empty()) {
      if (!skip_nonfinite) return absl::DataLossError(absl::StrCat(nonfinite, "; stopping (train.on_nonfinite: stop)"));
      if (++skipped_in_row > max_skips) {
        return absl::DataLossError(absl::StrCat(nonfinite, "; stopping: ", skipped_in_row,
                                                " steps in a row skipped (train.max_skipped_steps: ", max_skips, ")"));
      }
      out << "step " << step << "/" << steps << " | skipped: " << nonfinite << std::endl;
    } else {
      skipped_in_row = 0;
      info = opt.step(model->parameters(), lr, r.train().grad_clip(), grad_norm);
    }
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - ts).count();
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double tps = static_cast<double>(global * len) / dt;
    // Model FLOPs per second per rank (see LlamaConfig), the numerator of MFU.
    const double tflops = tps * flops_per_token / 1e12 / static_cast<double>(world.size());
    nlohmann::json rec = {{"step", step}, {"lr", lr}, {"tokens_per_s", tps}, {"tflops", tflops}};
    if (nonfinite.empty()) {
      rec["loss"] = loss.mean();
      rec["grad_norm"] = info.grad_norm;
    } else {
      rec["skipped"] = nonfinite;  // a skipped step's record: no loss, no grad_norm
    }
    if (peak_tflops > 0) rec["mfu"] = tflops / peak_tflops;
    const bool evaluated =
        heldout && r.eval().interval() > 0 && (step % r.eval().interval() == 0 || step == steps);
    if (evaluated) {
      const int64_t longest = *std::max_element(r.eval().lengths().begin(), r.eval().lengths().end());
      for (int64_t l : r.eval().lengths()) {
        absl::StatusOr<HeldoutEval> e = heldout_eval(*model, *heldout, l, r.eval().tokens(), par);
        if (!e.ok()) return e.status();
        rec[absl::StrCat("eval_loss_", l)] = e->loss;
        double mean = 0;
        for (double h : e->layer_entropy) mean += h / static_cast<double>(e->layer_entropy.size());
        rec[absl::StrCat("eval_entropy_", l)] = mean;
        if (l != longest) continue;  // per layer at the longest length only
        for (size_t layer = 0; layer < e->layer_entropy.size(); ++layer)
          rec[absl::StrCat("eval_entropy_", l, "_layer", layer)] = e->layer_entropy[layer];
      }
    }
    if (rank0) {
      metrics << rec.dump() << "\n";
      metrics.flush();
      if (!metrics) return absl::DataLossError(absl::StrCat(run_dir, "/metrics.jsonl: write failed (disk full?)"));
    }
    // Tags: train/<key> for the step's numbers, eval/loss_<length> for held-out losses.
    std::vector<std::pair<std::string, double>> scalars;
    for (const auto& [key, value] : rec.items()) {
      if (key == "step" || !value.is_number()) continue;
      scalars.emplace_back(absl::StartsWith(key, "eval_") ? "eval/" + key.substr(5) : "train/" + key,
                           value.get<double>());
    }
    const double wall = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    if (tb) {
      if (absl::Status st = tb->add_scalars(step, scalars, wall); !st.ok()) return st;
    }
    if (nonfinite.empty() && (step == start + 1 || step == steps || step % log_every == 0 || evaluated)) {
      out << absl::StrFormat("step %d/%d | loss %.4f | lr %.2e | grad norm %.3f | %.0f tok/s | %.3g TFLOP/s",
                             step, steps, loss.mean(), lr, info.grad_norm, tps, tflops);
      if (peak_tflops > 0) out << absl::StrFormat(" | MFU %.1f%%", 100 * tflops / peak_tflops);
      out << " | ETA "
          << duration(elapsed / static_cast<double>(step - start) * static_cast<double>(steps - step));
      for (int64_t l : r.eval().lengths())
        if (rec.contains(absl::StrCat("eval_loss_", l)))
          out << absl::StrFormat(" | eval@%d %.4f", l, rec[absl::StrCat("eval_loss_", l)].get<double>());
      out << std::endl;
    }
    const int64_t interval = r.checkpoint().interval();
    // Whole tensors: the tp ranks gather their shards (collectively); every
    // dp x cp replica then holds the same ones, and world rank 0 writes them.
    if (step == steps || (interval > 0 && step % interval == 0)) {
      const CheckpointTensors tensors = opt.checkpoint_tensors(model->parameters(), par.tp);
      // The others wait for rank 0's write here, with a long timeout, rather
      // than in the next step's collective under the normal one.
      constexpr double kCheckpointWriteTimeoutS = 3600;
      if (!rank0) {
        (*grid)->world().barrier(kCheckpointWriteTimeoutS);
        continue;
      }
      CheckpointInfo ck{.step = step, .sampler = {{"next_sample", step * global}}, .recipe_yaml = recipe_yaml};
      ck.after_stage = [&, step](int stage) { faults->at_checkpoint_stage(step, stage); };
      if (absl::StartsWith(r.data().tokenizer(), "spm:"))
        ck.extra_files["tokenizer.model"] = r.data().tokenizer().substr(4);
      if (absl::Status s = save_checkpoint(run_dir, ck, tensors, static_cast<int>(r.checkpoint().keep()));
          !s.ok()) {
        return s;
      }
      (*grid)->world().barrier(kCheckpointWriteTimeoutS);
    }
  }
  return absl::OkStatus();
}

}  // namespace rotor
