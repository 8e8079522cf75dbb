// `rotor eval passkey|needle`: the retrieval grids of eval/retrieval.h for a
// run's checkpoint.
//
//   rotor eval passkey RECIPE.yaml [--checkpoint DIR] [--set KEY=VALUE ...] [--out DIR]
//                      [--lengths 256,512] [--depths 0,0.25,0.5,0.75,1] [--trials N] [--seed N]
//   rotor eval needle  (the same)
//
// The model (sizes, rope, logit_scale) comes from RECIPE with its --set
// overrides, so an evaluation can change the RoPE method of a trained model
// (e.g. --set rope.method=dynamic); the weights come from --checkpoint DIR (a
// checkpoint directory or a run directory, meaning its latest checkpoint),
// by default the latest checkpoint of the recipe's run.dir. A recipe with a
// sweep is refused (evaluate one run: its run directory holds its recipe).
// The tokenizer is the checkpoint's tokenizer.model when present, else the
// recipe's data.tokenizer.
//
// Defaults: lengths = eval.lengths of the recipe, or data.sequence_length;
// depths 0,0.25,0.5,0.75,1; trials 5; seed 1234. The needle haystack is real
// text: the first tokens of data.heldout, or of the first data.datasets entry
// when there is no held-out set (said on stderr: that text was trained on),
// read in dataset order, at least max(lengths) tokens.
//
// Layout: under mpirun the recipe's parallel.tp x parallel.cp (dp the rest),
// answering by recomputation in that layout (eval/retrieval.h:
// recompute_answerer); one rank decodes with a KV cache. Rank 0 prints and
// writes the CSV.
//
// Output: <out>/passkey.csv or <out>/needle.csv (header
// "run,step,length,depth,trials,passed,pass_rate,mean_entropy", run = the
// file name of run.dir, step = the checkpoint's step); <out> defaults to
// <run.dir>/eval. One progress line per cell on `out`.
//
// Errors: "rotor eval KIND: MESSAGE" on `err`. Status 2: usage and input
// errors (an unknown option, a bad --lengths/--depths/--trials value, a
// missing or invalid recipe, no checkpoint, a length too short for the
// prompt, a missing haystack dataset); status 1: failures after that (a
// corrupted checkpoint, an unwritable --out).
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace rotor {

// kind: "passkey" or "needle"; args: the words after the kind. --help prints
// the usage to `out` and returns 0.
int run_eval_retrieval(const std::string& kind, const std::vector<std::string>& args,
                       std::ostream& out, std::ostream& err);

}  // namespace rotor
