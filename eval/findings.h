// The seed papers' five findings, checked on the eval CSVs of a set of runs
// (`rotor report` writes findings.md from them). The papers: Zhong et al.,
// "Understanding the RoPE Extensions of Long-Context LLMs: An Attention
// Perspective" (findings 1-4) and Zhang et al., "Extending LLMs' Context
// Window with 100 Samples" (entropy-aware ABF, finding 5).
//
// The runs: the base run (the one run not continued from a checkpoint), the
// extension runs (continued runs at the main extended length Lx: the length
// most continued runs trained at, the longest on a tie) and the ablation runs
// (continued runs at other lengths). Each finding states what it compares;
// a finding whose inputs are missing is "not measured", never guessed.
//
//  1. The base model breaks past its training length Lb, every extension
//     method holds to Lx: the base's largest ppl at a length past Lb is >=
//     1.1 x its ppl(Lb), and every extension run has ppl(Lx) <= 1.05 x its
//     ppl(Lb) and below the base's ppl(Lx). (Per-document perplexity falls
//     with length while the context helps, so a base model can look fine at
//     2x and break at 8x.)
//  2. Keeping the pretrained attention helps: the extension run with the
//     largest attention JS divergence from the base (attention.csv
//     js_divergence, the mean over layers at the run's longest attention
//     length) has the worst ppl at the longest length all extension runs were
//     evaluated at (beyond Lx when there is one).
//  3. Attention uncertainty goes with retrieval errors: over the (run, length,
//     depth) cells of passkey.csv and needle.csv, the Spearman rank
//     correlation of mean_entropy with pass_rate is negative with one-sided
//     p < 0.05 (normal approximation, z = rho sqrt(n - 1)). Needs pass rates
//     that vary.
//  4. A longer continual-pretraining length lowers attention entropy and
//     raises retrieval: for a method (the same rope and logit scale) trained at
//     two lengths (an ablation run and its extension run), the longer run has the lower attention entropy
//     at the attention length both were measured at, and the higher mean
//     passkey/needle/RULER score over the cells both have.
//  5. Entropy-aware ABF extrapolates best at 2x its training length: among
//     the extension runs, the one with an attention-logit scale (entropy-aware
//     ABF; there must be exactly one) has the lowest ppl at 2 Lx.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "eval/report.h"

namespace rotor::eval {

// What findings need to know of a run beyond its CSVs (its recipe.yaml).
struct RunInfo {
  std::string name;                 // the CSVs' run column
  std::string rope;                 // "none theta=500000", "yarn theta=10000 factor=4": method and knobs
  std::string logit_scale = "none";  // logit_scale.kind
  int64_t train_length = 0;         // data.sequence_length
  bool continued = false;           // model.init_from is set
};

enum class Verdict { kReproduced, kNotReproduced, kNotMeasured };
const char* verdict_name(Verdict v);  // "reproduced", "not reproduced", "not measured"

struct Finding {
  int number = 0;
  std::string claim;
  Verdict verdict = Verdict::kNotMeasured;
  std::string summary;   // one line: the numbers the verdict rests on
  std::string evidence;  // markdown: the table of numbers, the rule applied
};

// The five findings on `tables` (read_run_evals + summarize) and `runs`.
std::vector<Finding> assess_findings(const EvalTables& tables, const std::vector<RunInfo>& runs);

// findings.md: a table of the verdicts, then each finding with its evidence.
std::string findings_markdown(const std::vector<Finding>& findings);
// The table alone, as plain text for a terminal.
std::string findings_table(const std::vector<Finding>& findings);

// Spearman's rank correlation of x and y (average ranks for ties); NaN when
// either is constant or they have fewer than 3 points.
double spearman(const std::vector<double>& x, const std::vector<double>& y);

}  // namespace rotor::eval
