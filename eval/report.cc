// Merged eval CSVs, per-run summaries and report.md. See report.h.
#include "eval/report.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "eval/csv.h"
#include "kernels/status.h"

namespace rotor::eval {
namespace {

namespace fs = std::filesystem;
using Row = CsvRow;

std::optional<int64_t> parse_int(const std::string& text) {
  int64_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return v;
}

// A number; an empty field is NaN (not measured).
std::optional<double> parse_number(const std::string& text) {
  if (text.empty()) return std::nan("");
  double v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return v;
}

// Column `name` of a row of `kind` (validated by read_eval_csv).
size_t column(const CsvKind& kind, const std::string& name) {
  return std::find(kind.header.begin(), kind.header.end(), name) - kind.header.begin();
}
int64_t int_at(const CsvKind& k, const Row& r, const std::string& name) {
  return *parse_int(r[column(k, name)]);
}
double num_at(const CsvKind& k, const Row& r, const std::string& name) {
  return *parse_number(r[column(k, name)]);
}

// attention.csv: per run, the mean of `metric` over layers (head -1 rows) at
// the run's longest length with that metric; bucket `all` when the run has it,
// else the mean over the position buckets.
std::map<std::string, RunSummary::LayerMean> layer_means(const CsvKind& kind, const std::vector<Row>& rows,
                                                         const std::string& metric) {
  auto wanted = [&](const Row& r) {
    return r[column(kind, "metric")] == metric && int_at(kind, r, "head") == -1 &&
           !std::isnan(num_at(kind, r, "value"));
  };
  std::map<std::string, int64_t> longest;
  std::map<std::string, bool> has_all;
  for (const Row& r : rows)
    if (wanted(r)) longest[r[0]] = std::max(longest[r[0]], int_at(kind, r, "length"));
  for (const Row& r : rows)
    if (wanted(r) && int_at(kind, r, "length") == longest[r[0]] && r[column(kind, "bucket")] == "all")
      has_all[r[0]] = true;
  std::map<std::string, std::pair<double, int>> sums;
  for (const Row& r : rows)
    if (wanted(r) && int_at(kind, r, "length") == longest[r[0]] &&
        (r[column(kind, "bucket")] == "all") == has_all[r[0]]) {
      sums[r[0]].first += num_at(kind, r, "value");
      sums[r[0]].second += 1;
    }
  std::map<std::string, RunSummary::LayerMean> out;
  for (const auto& [name, sum] : sums)
    out[name] = {sum.first / sum.second, longest[name], !has_all[name]};
  return out;
}

RunSummary& summary_of(std::vector<RunSummary>& runs, const std::string& name) {
  for (RunSummary& s : runs)
    if (s.name == name) return s;
  RunSummary fresh;
  fresh.name = name;
  runs.push_back(std::move(fresh));
  return runs.back();
}

// ruler.csv: each run's score per task and length (rows of one cell pooled,
// weighed by their samples).
void ruler_scores(const CsvKind& kind, const std::vector<Row>& rows, std::vector<RunSummary>& runs) {
  std::map<std::pair<std::string, std::string>, std::map<int64_t, std::pair<double, int64_t>>> sums;
  for (const Row& r : rows) {
    const double score = num_at(kind, r, "pass_rate");
    const int64_t n = int_at(kind, r, "samples");
    if (std::isnan(score) || n <= 0) continue;
    RunSummary& s = summary_of(runs, r[0]);
    const std::string& task = r[column(kind, "task")];
    if (std::none_of(s.ruler.begin(), s.ruler.end(), [&](const auto& t) { return t.first == task; }))
      s.ruler.push_back({task, {}});
    auto& [total, count] = sums[{r[0], task}][int_at(kind, r, "length")];
    total += score * static_cast<double>(n);
    count += n;
  }
  for (RunSummary& s : runs)
    for (auto& [task, by_length] : s.ruler)
      for (const auto& [length, sum] : sums[{s.name, task}]) by_length[length] = sum.first / static_cast<double>(sum.second);
}

// RULER's average over the tasks at each length of a run.
std::map<int64_t, double> ruler_average(const RunSummary& r) {
  std::map<int64_t, std::pair<double, int>> sums;
  for (const auto& [task, by_length] : r.ruler)
    for (const auto& [length, score] : by_length) {
      sums[length].first += score;
      sums[length].second += 1;
    }
  std::map<int64_t, double> out;
  for (const auto& [length, sum] : sums) out[length] = sum.first / sum.second;
  return out;
}

// The RULER section of report.md (empty when no run has ruler.csv rows).
std::string ruler_markdown(const std::vector<RunSummary>& runs);

// Fills `runs` from the merged tables (file name -> rows).
void summarize_rows(const std::map<std::string, std::vector<Row>>& merged, std::vector<RunSummary>& runs) {
  for (const CsvKind& kind : eval_csv_kinds()) {
    const std::vector<Row> rows = latest_rows(kind, merged.at(kind.file));
    for (const Row& r : rows) {
      RunSummary& s = summary_of(runs, r[0]);
      s.step = std::max(s.step, int_at(kind, r, "step"));
    }
    if (kind.file == "ppl.csv") {
      for (const Row& r : rows) {
        if (r[column(kind, "bucket")] != "all") continue;
        RunSummary& s = summary_of(runs, r[0]);
        s.ppl[int_at(kind, r, "length")] = num_at(kind, r, "ppl");
        s.train_length = int_at(kind, r, "train_length");
      }
    } else if (kind.file == "attention.csv") {
      for (const auto& [name, m] : layer_means(kind, rows, "entropy")) summary_of(runs, name).entropy = m;
      for (const auto& [name, m] : layer_means(kind, rows, "js_divergence")) summary_of(runs, name).js = m;
    } else if (kind.file == "ruler.csv") {
      ruler_scores(kind, rows, runs);
    } else {  // passkey, needle: the mean of the cells' pass rates
      std::map<std::string, std::pair<double, int>> sums;
      for (const Row& r : rows) {
        const double rate = num_at(kind, r, "pass_rate");
        if (std::isnan(rate)) continue;
        sums[r[0]].first += rate;
        sums[r[0]].second += 1;
      }
      for (const auto& [name, sum] : sums)
        (kind.file == "passkey.csv" ? summary_of(runs, name).passkey
                                    : summary_of(runs, name).needle) = sum.first / sum.second;
    }
  }
}

std::string length_label(int64_t n) {
  if (n >= 1024 && n % 1024 == 0) return absl::StrCat(n / 1024, "K");
  return absl::StrCat(n);
}

std::string cell(const std::optional<double>& v, const absl::FormatSpec<double>& format) {
  if (!v || std::isnan(*v)) return "-";
  return absl::StrFormat(format, *v);
}

// The plots report.md links to, with their captions.
std::vector<std::pair<std::string, std::string>> plot_files(const std::string& dir,
                                                            const std::vector<RunSummary>& runs) {
  std::vector<std::pair<std::string, std::string>> all = {
      {"ppl_vs_length.png", "Perplexity vs length"},
      {"ppl_by_position.png", "Loss by position at the longest length"},
      {"entropy_by_layer.png", "Attention entropy by layer and position"}};
  for (const char* task : {"passkey", "needle", "ruler"})
    for (const RunSummary& r : runs) {
      std::string safe;
      for (char c : r.name)
        safe += std::isalnum(static_cast<unsigned char>(c)) || std::string("._=+-").find(c) != std::string::npos
                    ? c
                    : '_';
      all.push_back({absl::StrCat(task, "_", safe.empty() ? "run" : safe, ".png"),
                     absl::StrCat(task, std::string(task) == "ruler" ? " score: " : " pass rate: ", r.name)});
    }
  std::vector<std::pair<std::string, std::string>> present;
  for (const auto& p : all)
    if (fs::exists(fs::path(dir) / p.first)) present.push_back(p);
  return present;
}

std::string ruler_markdown(const std::vector<RunSummary>& runs) {
  std::set<int64_t> lengths;
  for (const RunSummary& r : runs)
    for (const auto& [length, score] : ruler_average(r)) lengths.insert(length);
  if (lengths.empty()) return "";
  auto header = [&](const std::string& first) {
    std::string h = absl::StrCat("| ", first, " |");
    for (int64_t len : lengths) absl::StrAppend(&h, " ", length_label(len), " |");
    absl::StrAppend(&h, "\n|---|");
    for (size_t i = 0; i < lengths.size(); ++i) absl::StrAppend(&h, "---:|");
    return h + "\n";
  };
  auto row = [&](const std::string& name, const std::map<int64_t, double>& by_length) {
    std::string line = absl::StrCat("| ", name, " |");
    for (int64_t len : lengths) {
      auto it = by_length.find(len);
      absl::StrAppend(&line, " ", it == by_length.end() ? "-" : absl::StrFormat("%.1f", 100 * it->second), " |");
    }
    return line + "\n";
  };
  std::ostringstream md;
  md << "\n## RULER\n\nScore (x100, RULER's string_match_all: the fraction of the expected strings in the "
        "greedy answer) averaged over the tasks each run was evaluated on, per length:\n\n"
     << header("run");
  for (const RunSummary& r : runs)
    if (!r.ruler.empty()) md << row(r.name, ruler_average(r));
  for (const RunSummary& r : runs) {
    if (r.ruler.empty()) continue;
    md << "\n### " << r.name << "\n\n" << header("task");
    for (const auto& [task, by_length] : r.ruler) md << row(task, by_length);
    md << row("**average**", ruler_average(r));
  }
  return md.str();
}

std::string markdown(const std::vector<std::string>& run_dirs, const std::vector<RunSummary>& runs,
                     const std::vector<std::string>& notes, const std::string& out_dir,
                     const std::string& plots_note) {
  std::set<int64_t> lengths;
  for (const RunSummary& r : runs)
    for (const auto& [len, ppl] : r.ppl) lengths.insert(len);
  std::ostringstream md;
  md << "# rotor report\n\n";
  md << "Runs read: " << absl::StrJoin(run_dirs, ", ") << "\n\n";
  md << "| run | step | train length |";
  for (int64_t len : lengths) md << " ppl@" << length_label(len) << " |";
  md << " passkey | needle | entropy | JS vs reference |\n|---|---:|---:|";
  for (size_t i = 0; i < lengths.size(); ++i) md << "---:|";
  md << "---:|---:|---:|---:|\n";
  auto layer_mean_cell = [](const std::optional<RunSummary::LayerMean>& m) -> std::string {
    if (!m) return "-";
    return absl::StrFormat("%.3f (@%s%s)", m->value, length_label(m->length), m->from_buckets ? ", buckets" : "");
  };
  for (const RunSummary& r : runs) {
    md << "| " << r.name << " | " << (r.step >= 0 ? absl::StrCat(r.step) : "-") << " | "
       << (r.train_length > 0 ? absl::StrCat(r.train_length) : "-") << " |";
    for (int64_t len : lengths) {
      auto it = r.ppl.find(len);
      md << " " << cell(it == r.ppl.end() ? std::nullopt : std::optional<double>(it->second), "%.3f")
         << " |";
    }
    md << " " << cell(r.passkey, "%.3f") << " | " << cell(r.needle, "%.3f") << " | "
       << layer_mean_cell(r.entropy) << " | " << layer_mean_cell(r.js) << " |\n";
  }
  md << "\nEach run at its latest step. ppl@N: perplexity of the whole window of N tokens "
        "(bucket `all`). passkey, needle: mean pass rate over the grid's (length, depth) cells. "
        "entropy: mean attention entropy in nats (mean over heads and layers) at the run's "
        "longest attention length (\"buckets\": the run has no bucket `all` rows, so the mean over "
        "its position buckets). JS vs reference: the same mean of the Jensen-Shannon divergence "
        "(nats, at most ln 2) between the run's attention rows and those of the checkpoint given "
        "to `rotor eval attention --reference`. Merged data: [ppl.csv](ppl.csv), [passkey.csv](passkey.csv), "
        "[needle.csv](needle.csv), [attention.csv](attention.csv), [ruler.csv](ruler.csv).\n";
  md << ruler_markdown(runs);
  if (!notes.empty()) {
    md << "\nMissing:\n\n";
    for (const std::string& n : notes) md << "- " << n << "\n";
  }
  md << "\n## Plots\n\n";
  const auto plots = plot_files(out_dir, runs);
  if (!plots_note.empty()) md << plots_note << "\n\n";
  for (const auto& [file, caption] : plots) md << "### " << caption << "\n\n![" << caption << "](" << file << ")\n\n";
  if (plots.empty() && plots_note.empty()) md << "No plot had data.\n";
  return md.str();
}

}  // namespace

std::vector<Row> latest_rows(const CsvKind& kind, const std::vector<Row>& rows) {
  std::map<std::string, int64_t> last;
  for (const Row& r : rows) {
    const int64_t s = int_at(kind, r, "step");
    auto [it, fresh] = last.emplace(r[0], s);
    if (!fresh) it->second = std::max(it->second, s);
  }
  std::vector<Row> out;
  for (const Row& r : rows)
    if (int_at(kind, r, "step") == last[r[0]]) out.push_back(r);
  return out;
}

double number_at(const CsvKind& kind, const CsvRow& row, const std::string& name) { return num_at(kind, row, name); }
int64_t integer_at(const CsvKind& kind, const CsvRow& row, const std::string& name) { return int_at(kind, row, name); }
const std::string& text_at(const CsvKind& kind, const CsvRow& row, const std::string& name) {
  return row[column(kind, name)];
}

const CsvKind* csv_kind(const std::string& file) {
  for (const CsvKind& k : eval_csv_kinds())
    if (k.file == file) return &k;
  return nullptr;
}

const std::vector<CsvKind>& eval_csv_kinds() {
  static const std::vector<CsvKind> kinds = {
      {"ppl.csv",
       {"run", "step", "train_length", "length", "bucket", "documents", "tokens", "loss", "ppl"},
       "siiisiiff"},
      {"passkey.csv",
       {"run", "step", "length", "depth", "trials", "passed", "pass_rate", "mean_entropy"},
       "siifiiff"},
      {"needle.csv",
       {"run", "step", "length", "depth", "trials", "passed", "pass_rate", "mean_entropy"},
       "siifiiff"},
      {"attention.csv",
       {"run", "step", "length", "layer", "head", "bucket", "metric", "value", "reference"},
       "siiiissfs"},
      {"ruler.csv",
       {"run", "step", "task", "length", "samples", "passed", "pass_rate", "mean_entropy"},
       "sisiiiff"},
  };
  return kinds;
}

absl::StatusOr<std::vector<CsvRow>> read_eval_csv(const std::string& path, const CsvKind& kind) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot read"));
  std::vector<Row> rows;
  std::string line;
  int line_no = 0;
  bool header_seen = false;
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() && header_seen) continue;
    absl::StatusOr<Row> fields = split_csv_line(line);
    if (!fields.ok())
      return absl::InvalidArgumentError(absl::StrCat(path, ":", line_no, ": ", fields.status().message()));
    if (!header_seen) {
      if (*fields != kind.header)
        return absl::InvalidArgumentError(absl::StrCat(path, ":", line_no, ": expected header '",
                                                       absl::StrJoin(kind.header, ","), "', got '",
                                                       line, "'"));
      header_seen = true;
      continue;
    }
    if (fields->size() != kind.header.size())
      return absl::InvalidArgumentError(absl::StrCat(path, ":", line_no, ": expected ",
                                                     kind.header.size(), " fields, got ",
                                                     fields->size()));
    for (size_t c = 0; c < kind.types.size(); ++c) {
      const std::string& f = (*fields)[c];
      const bool ok = kind.types[c] == 'i'   ? parse_int(f).has_value()
                      : kind.types[c] == 'f' ? parse_number(f).has_value()
                                             : true;
      if (!ok)
        return absl::InvalidArgumentError(
            absl::StrCat(path, ":", line_no, ": column '", kind.header[c], "': expected ",
                         kind.types[c] == 'i' ? "an integer" : "a number", ", got '", f, "'"));
    }
    rows.push_back(std::move(*fields));
  }
  if (!header_seen)
    return absl::InvalidArgumentError(absl::StrCat(path, ":1: empty file, expected header '",
                                                   absl::StrJoin(kind.header, ","), "'"));
  return rows;
}

EvalTables::EvalTables() {
  for (const CsvKind& kind : eval_csv_kinds()) merged[kind.file];
}

absl::Status read_run_evals(const std::string& run_dir, EvalTables& tables) {
  std::error_code ec;
  if (!fs::is_directory(run_dir, ec)) return absl::NotFoundError(absl::StrCat(run_dir, ": not a directory"));
  const fs::path eval_dir = fs::is_directory(fs::path(run_dir) / "eval", ec) ? fs::path(run_dir) / "eval"
                                                                             : fs::path(run_dir);
  bool any = false;
  for (const CsvKind& kind : eval_csv_kinds()) {
    const fs::path path = eval_dir / kind.file;
    if (!fs::exists(path, ec)) {
      tables.missing.push_back(path.string());
      continue;
    }
    ROTOR_ASSIGN_OR_RETURN(std::vector<Row> rows, read_eval_csv(path.string(), kind));
    any = true;
    std::vector<Row>& dest = tables.merged[kind.file];
    dest.insert(dest.end(), rows.begin(), rows.end());
  }
  if (!any) {  // still a row in the table, named by the directory
    const fs::path p = fs::path(run_dir).lexically_normal();
    summary_of(tables.runs, (p.has_filename() ? p.filename() : p.parent_path().filename()).string());
  }
  return absl::OkStatus();
}

void summarize(EvalTables& tables) { summarize_rows(tables.merged, tables.runs); }

absl::Status write_merged_csvs(const EvalTables& tables, const std::string& out_dir) {
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat("cannot create ", out_dir, ": ", ec.message()));
  for (const CsvKind& kind : eval_csv_kinds()) {
    const fs::path path = fs::path(out_dir) / kind.file;
    std::ofstream f(path);
    f << absl::StrJoin(kind.header, ",") << "\n";
    for (const Row& r : tables.merged.at(kind.file)) {
      for (size_t c = 0; c < r.size(); ++c) f << (c > 0 ? "," : "") << csv_field(r[c]);
      f << "\n";
    }
    if (!f) return absl::DataLossError(absl::StrCat("cannot write ", path.string()));
  }
  return absl::OkStatus();
}

std::string report_markdown(const std::vector<std::string>& run_dirs, const EvalTables& tables,
                            const std::string& out_dir, const std::string& plots_note) {
  std::vector<std::string> notes;
  for (const std::string& path : tables.missing) notes.push_back(absl::StrCat(path, " (not found)"));
  return markdown(run_dirs, tables.runs, notes, out_dir, plots_note);
}

}  // namespace rotor::eval
