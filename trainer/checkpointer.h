// The run's checkpoints (the files: trainer/checkpoint.h):
//
//   restore  at the start: resume from the newest checkpoint of run.dir that
//            verifies on every rank (one that does not, a flipped byte or a
//            truncated file, is reported by name and the previous one tried;
//            none usable is an error, never a silent fresh start); with none,
//            model.init_from's weights (continual pretraining: fresh
//            optimizer state and schedule); with neither, the initialised
//            model as it is.
//   save     after step S when S is a multiple of checkpoint.interval or the
//            last step of the run or of a stage: whole tensors (the tp ranks gather their shards
//            collectively, ZeRO-1 its moments), written by world rank 0 with
//            data.tokenizer's SentencePiece model, the oldest beyond
//            checkpoint.keep removed; the other ranks wait for the write at a
//            barrier.
#pragma once

#include <climits>
#include <cstdint>
#include <optional>
#include <ostream>
#include <string>

#include "absl/status/statusor.h"
#include "model/llama.h"
#include "parallel/communicator.h"
#include "parallel/context.h"
#include "trainer/observer.h"
#include "trainer/optimizer.h"
#include "trainer/recipe/recipe.pb.h"

namespace rotor {

struct CheckpointerSettings {
  std::string run_dir = {};
  std::string init_from = {};  // model.init_from: a checkpoint or a run directory; "" none
  int64_t interval = 0;        // checkpoint.interval; <= 0: the last step only
  int keep = 0;                // checkpoint.keep; <= 0: all
  int64_t steps = 0;           // the last step of the stage (of the run without stages): always saved
  int64_t samples_per_step = 0;  // the global batch, for the sampler position
  std::string recipe_yaml = {};  // the resolved recipe, stored in each checkpoint
  std::string tokenizer_model = {};  // data.tokenizer's SentencePiece model file (spm:); "" none
  std::string stage = {};      // the stage's name ("" without stages), recorded in state.json
  int stage_index = 0;
  int64_t first_step = 1;      // the stage's first step

  static CheckpointerSettings of(const recipe::Recipe& r, int64_t samples_per_step, const std::string& recipe_yaml);
};

// Where restore() left the run.
struct RunStart {
  int64_t step = 0;           // the last step done: the run goes on from step + 1
  std::string resumed_from;   // the checkpoint resumed from; "" when the run starts at step 1
};

// The step of the run's newest complete checkpoint (0: none), the largest any
// rank of `world` sees: where a resume starts looking. Collective.
int64_t newest_checkpoint_step(const std::string& run_dir, Communicator& world);

class Checkpointer {
 public:
  // `world`: every rank of the run (the process grid's world); `par` its
  // layout; `out`: progress messages (world rank 0's; the others pass a
  // discarding stream). Everything referenced outlives this.
  Checkpointer(const CheckpointerSettings& settings, Communicator& world, const ParallelContext& par,
               std::ostream& out, TrainObserver* observer = nullptr);
  Checkpointer(const Checkpointer&) = delete;
  Checkpointer& operator=(const Checkpointer&) = delete;

  // Loads the run's newest usable checkpoint of step <= max_step, or
  // model.init_from, into the model (and, resuming, the optimizer); the
  // caller reports a resume (RunStart::resumed_from). Collective over the world.
  absl::StatusOr<RunStart> restore(LlamaModel& model, Optimizer& optimizer, int64_t max_step = INT64_MAX);

  // Loads the checkpoint of step `step` (a stage's last, just saved) into the
  // model and optimizer: a stage's start. Collective over the world.
  absl::Status load_step(LlamaModel& model, Optimizer& optimizer, int64_t step);

  // Saves step `step` when it is due (see above). Collective over the world.
  absl::Status after_step(int64_t step, LlamaModel& model, const Optimizer& optimizer);

 private:
  absl::Status init_from(LlamaModel& model);
  // Loads checkpoint `dir` on every rank (into `info`); nullopt when every
  // rank could, else this rank's reason ("" when only another rank failed).
  std::optional<std::string> load_everywhere(const std::string& dir, LlamaModel& model, Optimizer& optimizer,
                                             absl::StatusOr<CheckpointInfo>& info);

  CheckpointerSettings settings_;
  Communicator& world_;
  ParallelContext par_;
  std::ostream& out_;
  TrainObserver no_observer_;
  TrainObserver* observer_;
};

}  // namespace rotor
