// `rotor eval ruler`: RULER's synthetic tasks (eval/ruler_tasks.h) answered
// by a run's checkpoint and scored as RULER scores them (eval/ruler.h).
//
//   rotor eval ruler RECIPE.yaml [--checkpoint DIR] [--set KEY=VALUE ...] [--out DIR]
//                    [--tasks T,...] [--lengths L,...] [--samples N] [--seed N] [--dump FILE]
//
// The model, weights, tokenizer, layout and exit statuses are those of `rotor
// eval passkey` (retrieval_command.h): the RECIPE with --set, the weights of
// --checkpoint (default: the latest of run.dir), the checkpoint's
// tokenizer.model else data.tokenizer; greedy answers with a KV cache on one
// rank, by recomputation in the recipe's tp/cp layout under mpirun. The
// data-parallel replicas (ranks / (tp x cp)) share the samples: sample i is
// answered by replica i % dp.
//
// Defaults: every task; lengths = eval.lengths, or data.sequence_length;
// 20 samples per (task, length) (RULER publishes 500); seed 42.
//
// Inputs of the generator: the word list /usr/share/dict/words (Debian's
// wamerican; read only when a chosen task needs keys or words) and, for the
// essay tasks, the text of data.heldout decoded by the tokenizer (else of
// the first data.datasets entry, said on stderr: text the model has seen;
// else the packaged public-domain text of eval/ruler_text.h, also said).
// Every (task, length) is generated before the model loads, so a task name,
// a length or a word list that cannot work fails at once (status 2).
//
// Output: <out>/ruler.csv (header ruler::kCsvHeader:
// "run,step,task,length,samples,passed,pass_rate,mean_entropy"), one
// progress line per cell, and with --dump FILE every sample as a JSON line
// (ruler::dump_line: task, length, index, input, answers, output, score,
// tokens), written cell by cell as they finish. Rank 0 writes.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace rotor {

// args: the words after "ruler". --help prints the usage to `out` and returns 0.
int run_eval_ruler(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace rotor
