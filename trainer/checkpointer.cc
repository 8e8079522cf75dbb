#include "trainer/checkpointer.h"

#include <optional>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "trainer/checkpoint.h"
#include "trainer/loading.h"
#include "kernels/status.h"

namespace rotor {
namespace {

// World-wide maximum of a small integer (every rank calls it).
int64_t max_over(Communicator& world, int64_t v) {
  Tensor t = Tensor::from_vector({static_cast<double>(v)}, {1}, DType::kF64);
  world.all_reduce(t, ReduceOp::kMax);
  return static_cast<int64_t>(t.item());
}

// The others wait for rank 0's checkpoint write with a long timeout, rather
// than in the next step's collective under the normal one.
constexpr double kCheckpointWriteTimeoutS = 3600;

}  // namespace

CheckpointerSettings CheckpointerSettings::of(const recipe::Recipe& r, int64_t samples_per_step,
                                              const std::string& recipe_yaml) {
  CheckpointerSettings s{.run_dir = r.run().dir(),
                         .init_from = r.model().init_from(),
                         .interval = r.checkpoint().interval(),
                         .keep = static_cast<int>(r.checkpoint().keep()),
                         .steps = r.train().steps(),
                         .samples_per_step = samples_per_step,
                         .recipe_yaml = recipe_yaml};
  if (absl::StartsWith(r.data().tokenizer(), "spm:")) s.tokenizer_model = r.data().tokenizer().substr(4);
  return s;
}

Checkpointer::Checkpointer(const CheckpointerSettings& settings, Communicator& world, const ParallelContext& par,
                           std::ostream& out, TrainObserver* observer)
    : settings_(settings),
      world_(world),
      par_(par),
      out_(out),
      observer_(observer != nullptr ? observer : &no_observer_) {}

absl::StatusOr<RunStart> Checkpointer::restore(LlamaModel& model, Optimizer& optimizer, int64_t max_step) {
  RunStart start;
  std::vector<std::string> candidates;
  for (const std::string& dir : resume_candidates(settings_.run_dir))
    if (checkpoint_dir_step(dir) <= max_step) candidates.push_back(dir);
  std::string unusable;
  for (const std::string& dir : candidates) {
    absl::StatusOr<CheckpointInfo> info;
    const std::optional<std::string> why = load_everywhere(dir, model, optimizer, info);
    if (!why) {
      start = {.step = info->step, .resumed_from = dir};
      break;
    }
    out_ << "rotor train: checkpoint " << dir << " is unusable"
         << (why->empty() ? " on another rank" : ": " + *why) << "; trying the previous one\n";
    absl::StrAppend(&unusable, "\n  ", dir, ": ", why->empty() ? "unusable on another rank" : *why);
  }
  if (!candidates.empty() && start.resumed_from.empty()) {
    return absl::DataLossError(
        absl::StrCat("no usable checkpoint in ", settings_.run_dir, "/checkpoints:", unusable));
  }
  if (start.resumed_from.empty() && !settings_.init_from.empty()) {
    ROTOR_RETURN_IF_ERROR(init_from(model));
  }
  return start;
}

std::optional<std::string> Checkpointer::load_everywhere(const std::string& dir, LlamaModel& model,
                                                         Optimizer& optimizer, absl::StatusOr<CheckpointInfo>& info) {
  info = optimizer.load(dir, model.parameters(), par_.tp_rank());
  // Every rank takes the same one: a failure on any rank rejects it.
  if (max_over(world_, info.ok() ? 0 : 1) == 0) return std::nullopt;
  return info.ok() ? std::string() : std::string(info.status().message());
}

absl::Status Checkpointer::load_step(LlamaModel& model, Optimizer& optimizer, int64_t step) {
  const std::string dir = checkpoint_dir(settings_.run_dir, step);
  absl::StatusOr<CheckpointInfo> info;
  const std::optional<std::string> why = load_everywhere(dir, model, optimizer, info);
  if (!why) return absl::OkStatus();
  return absl::DataLossError(absl::StrCat("stage ", settings_.stage, ": cannot load the previous stage's last checkpoint ",
                                          dir, ": ", why->empty() ? "unusable on another rank" : *why));
}

int64_t newest_checkpoint_step(const std::string& run_dir, Communicator& world) {
  const std::vector<std::string> dirs = resume_candidates(run_dir);
  return max_over(world, dirs.empty() ? 0 : std::max<int64_t>(0, checkpoint_dir_step(dirs.front())));
}

absl::Status Checkpointer::init_from(LlamaModel& model) {
  // A checkpoint directory, or a run directory whose latest is taken; the
  // weights only.
  absl::StatusOr<std::string> source = resolve_checkpoint_dir(settings_.init_from);
  if (!source.ok()) return with_context(source.status(), "model.init_from: ");
  absl::StatusOr<CheckpointInfo> info = load_checkpoint(*source, model.parameters(), nullptr, par_.tp_rank());
  if (!info.ok()) return with_context(info.status(), "model.init_from: ");
  out_ << "initialised from " << *source << " (its step " << info->step << ")\n";
  return absl::OkStatus();
}

absl::Status Checkpointer::after_step(int64_t step, LlamaModel& model, const Optimizer& optimizer) {
  if (step != settings_.steps && (settings_.interval <= 0 || step % settings_.interval != 0)) {
    return absl::OkStatus();
  }
  // Whole tensors: the tp ranks gather their shards (collectively); every
  // dp x cp replica then holds the same ones, and world rank 0 writes them.
  const CheckpointTensors tensors = optimizer.checkpoint_tensors(model.parameters(), par_.tp);
  if (world_.rank() == 0) {
    const int64_t stage_step = step - settings_.first_step + 1;  // the run's step without stages
    CheckpointInfo ck{.step = step,
                      .sampler = {{"next_sample", stage_step * settings_.samples_per_step}},
                      .recipe_yaml = settings_.recipe_yaml};
    if (!settings_.stage.empty()) {
      ck.sampler["stage"] = settings_.stage;
      ck.sampler["stage_index"] = settings_.stage_index;
      ck.sampler["stage_step"] = stage_step;
    }
    ck.after_stage = [this, step](int stage) { observer_->at_checkpoint_stage(step, stage); };
    if (!settings_.tokenizer_model.empty()) ck.extra_files["tokenizer.model"] = settings_.tokenizer_model;
    ROTOR_RETURN_IF_ERROR(save_checkpoint(settings_.run_dir, ck, tensors, settings_.keep));
  }
  world_.barrier(kCheckpointWriteTimeoutS);
  return absl::OkStatus();
}

}  // namespace rotor
