// `rotor report RUN_DIR... --out DIR [--no-plots] [--plots PLOTS_PY]`: the
// evaluation results of several runs side by side.
//
// Reads each run's eval CSVs (written by `rotor eval` into <RUN_DIR>/eval/; a
// RUN_DIR without an eval/ folder is read as the eval folder itself):
//   ppl.csv        run,step,train_length,length,bucket,documents,tokens,loss,ppl
//   passkey.csv    run,step,length,depth,trials,passed,pass_rate,mean_entropy
//   needle.csv     (same columns as passkey.csv)
//   attention.csv  run,step,length,layer,head,bucket,metric,value,reference
//   ruler.csv      run,step,task,length,samples,passed,pass_rate,mean_entropy
// A missing file is skipped and said on stderr. Every row is checked (header,
// number of fields, numbers where numbers belong); an error names the file and
// line ("runs/a/eval/ppl.csv:7: column 'ppl': expected a number, got 'x'").
//
// Writes into DIR:
//   ppl.csv, passkey.csv, needle.csv, attention.csv, ruler.csv: the rows of all runs, in
//     the order of the RUN_DIRs, under the same headers;
//   report.md: one table, a row per run (its latest step in each file), with
//     the training length, perplexity (bucket `all`) at each evaluated length,
//     passkey and needle mean pass rate (mean over the grid's cells) and mean
//     attention entropy (metric entropy, head -1, bucket `all` (or the mean
//     over the position buckets when a run has no `all` rows), mean over the
//     layers, at the run's longest attention length); the RULER tables: the
//     score (x100) averaged over the tasks per length, a row per run, as
//     RULER publishes it, then per run a task x length table (rows of one
//     cell pooled, weighed by samples); then links to the plots;
//   findings.md: the seed papers' five findings (eval/findings.h) checked on
//     the runs, each reproduced / not reproduced / not measured with its
//     numbers; what each run is (base, extension, ablation; its rope and
//     logit scale) comes from <RUN_DIR>/recipe.yaml (a staged run: its last
//     stage's settings; a RUN_DIR without one is
//     left out, said on stderr); the verdicts are also printed;
//   the PNGs of eval/plots.py (see that file), unless --no-plots.
//
// The plot script is --plots PATH, else $ROTOR_PLOTS, else eval/plots.py found
// from the executable (<exe dir>/../../eval/plots.py, i.e. build/bin/rotor in
// a source checkout, or <exe dir>/../eval/plots.py, or
// <exe dir>/../share/rotor/plots.py). It runs under /usr/bin/python3 (python3
// from PATH where that does not exist). Without python3, matplotlib or the
// script, the tables are still written and a warning is printed (status 0).
//
// Exit status: 0 done, 1 a failure (unreadable or malformed CSV, unwritable
// DIR, plot script failed), 2 usage.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace rotor {

int run_report(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace rotor
