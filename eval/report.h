// `rotor report`'s tables: the eval CSVs of several runs (written by `rotor
// eval` into <RUN_DIR>/eval/), checked, merged, summarized per run and laid
// out as report.md. trainer/cli/report_command.h describes the files, the
// checks and the table.
//
//   EvalTables t;
//   for (const std::string& dir : run_dirs) read_run_evals(dir, t);  // stop at an error
//   summarize(t);
//   write_merged_csvs(t, "report");
//   std::string md = report_markdown(run_dirs, t, "report", "");
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace rotor::eval {

// One kind of eval CSV: its file name, header and column types (s = text,
// i = integer, f = number; an empty f field is NaN, not measured).
struct CsvKind {
  std::string file;
  std::vector<std::string> header;
  std::string types;
};
// ppl.csv, passkey.csv, needle.csv, attention.csv, ruler.csv, in that order.
const std::vector<CsvKind>& eval_csv_kinds();

using CsvRow = std::vector<std::string>;

// The kind of eval CSV `file` ("ppl.csv", ...); nullptr when there is none.
const CsvKind* csv_kind(const std::string& file);

// The rows of `path` (header excluded), every field checked against `kind`.
// InvalidArgument naming the file and line ("runs/a/eval/ppl.csv:7: column
// 'ppl': expected a number, got 'x'"); NotFound when it cannot be read.
absl::StatusOr<std::vector<CsvRow>> read_eval_csv(const std::string& path, const CsvKind& kind);

// Column `name` of a row of `kind` (read_eval_csv validated it): as a number
// (an empty field is NaN), an integer, or text.
double number_at(const CsvKind& kind, const CsvRow& row, const std::string& name);
int64_t integer_at(const CsvKind& kind, const CsvRow& row, const std::string& name);
const std::string& text_at(const CsvKind& kind, const CsvRow& row, const std::string& name);
// Each run's rows at its latest step.
std::vector<CsvRow> latest_rows(const CsvKind& kind, const std::vector<CsvRow>& rows);

// What the table shows of one run.
struct RunSummary {
  std::string name;
  int64_t step = -1;
  int64_t train_length = -1;
  std::map<int64_t, double> ppl;  // length -> ppl (bucket all)
  std::optional<double> passkey, needle;
  struct LayerMean {
    double value = 0;
    int64_t length = 0;
    bool from_buckets = false;  // no bucket `all` rows: the mean over the buckets
  };
  std::optional<LayerMean> entropy, js;  // attention.csv metrics entropy and js_divergence
  // ruler.csv: task -> length -> mean score (pass_rate, weighed by samples),
  // tasks in the order of the file.
  std::vector<std::pair<std::string, std::map<int64_t, double>>> ruler;
};

// The eval results of the runs read so far.
struct EvalTables {
  std::map<std::string, std::vector<CsvRow>> merged;  // file name -> rows of every run, in order
  std::vector<std::string> missing;                   // paths of eval CSVs not found
  std::vector<RunSummary> runs;                       // table rows, in order of appearance
  EvalTables();                                       // merged: every kind, no rows
};

// Reads the eval CSVs of `run_dir` (<run_dir>/eval, or run_dir itself when it
// has no eval folder) into `tables`: rows appended to `merged`, each missing
// file to `missing`; a run_dir with none of the files still gets a table row,
// named by the directory. Errors: "<run_dir>: not a directory", or
// read_eval_csv's; `missing` holds the files missing before the error.
absl::Status read_run_evals(const std::string& run_dir, EvalTables& tables);

// Fills `tables.runs` from the merged rows: each run at its latest step in
// each file; ppl at each length (bucket all); passkey and needle mean pass
// rates over the cells; the RULER score of each task and length; the mean over layers of the entropy and
// js_divergence (head -1) at the run's longest attention length (bucket all,
// else the mean over the position buckets).
void summarize(EvalTables& tables);

// Creates `out_dir` and writes the merged CSVs into it, each under its header.
// Errors: "cannot create DIR: ...", "cannot write PATH".
absl::Status write_merged_csvs(const EvalTables& tables, const std::string& out_dir);

// report.md: the table of `tables.runs`, the missing files, the RULER tables
// (the average over tasks per length for every run, as RULER publishes it,
// then task x length per run), and links to the plots found in `out_dir`
// (after `plots_note`, when not empty).
std::string report_markdown(const std::vector<std::string>& run_dirs, const EvalTables& tables,
                            const std::string& out_dir, const std::string& plots_note);

}  // namespace rotor::eval
