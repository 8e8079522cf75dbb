// `rotor eval`: evaluations of a run's checkpoint.
//
//   rotor eval ppl RECIPE.yaml [--checkpoint DIR] [--set k=v ...] [--out DIR]
//                              [--stride N] [--documents N]
//   rotor eval attention RECIPE.yaml [--checkpoint DIR] [--reference CHECKPOINT_DIR]
//                              [--length N] [--documents N] [--out DIR] [--set k=v ...]
//   rotor eval passkey|needle ...   the retrieval grids (retrieval_command.h;
//                                   trainer/cli/main.cc dispatches them there)
//
// The model is the RECIPE's (with --set applied: sizes, RoPE method and
// logit scalar, so an eval-time change such as --set rope.method=dynamic is
// possible) with the weights of --checkpoint: a checkpoint directory or a run
// directory (its latest checkpoint); default the recipe's run.dir. Held-out
// documents: the recipe's data.heldout (a Megatron indexed dataset, like the
// trainer's eval). Output files go to --out, default <run.dir>/eval.
//
// ppl: perplexity at each of eval.lengths (eval/ppl.h): one window per
// document, its first L+1 tokens (shorter documents are skipped), or with
// --stride N the sliding window. --documents N caps the documents per length
// (default max(1, eval.tokens / L), the trainer's token budget). Runs in the
// recipe's parallel layout (parallel.tp/cp, dp = world / (tp * cp)) under
// mpirun (eval/ppl.h: perplexity_by_length). Writes <out>/ppl.csv
// (eval::kPplCsvHeader):
//   run,step,train_length,length,bucket,documents,tokens,loss,ppl
// one row with bucket "all" per length, then one per position bucket
// ("0-1K", ...); run = the run directory's name, train_length =
// data.sequence_length, loss in nats, ppl = exp(loss).
//
// attention: attention statistics (eval/attention_stats.h) on the first
// --documents (default 1) held-out documents of at least --length + 1 tokens
// (default --length: data.sequence_length), in the recipe's layout like ppl
// (heads over tp, query rows over cp; every rank gets the summed tables, rank
// 0 writes). With --reference also the JS divergence of every attention row
// against the reference checkpoint's model (built from that checkpoint's own
// recipe.yaml). Writes <out>/attention.csv (eval::kAttentionCsvHeader):
//   run,step,length,layer,head,bucket,metric,value,reference
// metric entropy (nats) | distance (tokens) | js_divergence (nats); head -1 is
// the mean over heads; bucket "all" or a label; reference = the reference
// checkpoint directory on js_divergence rows, empty otherwise.
//
// A short table goes to `out` (stdout). Errors are "rotor eval: MESSAGE" on
// `err`, naming the option or file. Status 2: usage errors (unknown option or
// evaluation, bad value, missing recipe/checkpoint/held-out data); 1: failures
// after that (a corrupted checkpoint, an unwritable --out). Under mpirun rank
// 0 writes the files and the table.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace rotor {

// Runs `rotor eval` with the words after "eval". Returns 0, 1 or 2 (see
// above); --help prints the usage to `out` and returns 0.
int run_eval_command(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace rotor
