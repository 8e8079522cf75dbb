// RULER scoring, the grid, its CSV and dump. See ruler.h.
#include "eval/ruler.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "eval/csv.h"
#include "kernels/status.h"
#include "nlohmann/json.hpp"

namespace rotor::ruler {

const char kCsvHeader[] = "run,step,task,length,samples,passed,pass_rate,mean_entropy";

std::string postprocess(const std::string& answer) {
  std::string s(absl::StripAsciiWhitespace(answer));
  for (char& c : s)
    if (static_cast<unsigned char>(c) < 0x20) c = '\n';
  return std::string(absl::StripAsciiWhitespace(s));
}

double string_match_all(const std::vector<std::string>& expected, const std::string& answer) {
  if (expected.empty()) return 0;
  const std::string got = absl::AsciiStrToLower(postprocess(answer));
  int64_t found = 0;
  for (const std::string& e : expected) found += got.find(absl::AsciiStrToLower(e)) != std::string::npos;
  return static_cast<double>(found) / static_cast<double>(expected.size());
}

absl::StatusOr<std::vector<CellKey>> planned_cells(Generator& generator, const Options& options) {
  std::vector<CellKey> cells;
  for (Task t : options.tasks) {
    int64_t least = 0;
    if (options.fitting_only) {
      ROTOR_ASSIGN_OR_RETURN(least, generator.minimum_length(t));
    }
    for (int64_t length : options.lengths)
      if (length >= least) cells.push_back({t, length});
  }
  return cells;
}

absl::Status check_options(Generator& generator, const Options& options) {
  if (options.tasks.empty()) return absl::InvalidArgumentError("no RULER tasks to evaluate");
  if (options.lengths.empty()) return absl::InvalidArgumentError("no lengths to evaluate");
  if (options.samples < 1) return absl::InvalidArgumentError(absl::StrCat("samples must be >= 1, got ", options.samples));
  for (int64_t length : options.lengths)
    if (length < 1) return absl::InvalidArgumentError(absl::StrCat("length must be >= 1, got ", length));
  ROTOR_ASSIGN_OR_RETURN(const std::vector<CellKey> cells, planned_cells(generator, options));
  if (cells.empty())
    return absl::InvalidArgumentError(absl::StrCat("no RULER task fits the lengths ", absl::StrJoin(options.lengths, ",")));
  for (const CellKey& c : cells) ROTOR_RETURN_IF_ERROR(generator.sample(c.task, c.length, 0).status());
  return absl::OkStatus();
}

namespace {

// The answers of one cell's samples: this replica's own (i % size == rank),
// then, over `replicas`, everyone's: one all-reduce of
// [samples, 2 + max_new] doubles (entropy, answer length, ids; ids < 2^53
// are exact), zero in the rows of the other replicas' samples.
std::vector<Answer> answer_cell(const Answerer& answer, const std::vector<Sample>& samples, Communicator* replicas) {
  const int size = replicas ? replicas->size() : 1, rank = replicas ? replicas->rank() : 0;
  std::vector<Answer> out(samples.size());
  for (size_t i = 0; i < samples.size(); ++i)
    if (static_cast<int>(i % static_cast<size_t>(size)) == rank)
      out[i] = answer(samples[i].ids, samples[i].max_new_tokens);
  if (size == 1 || samples.empty()) return out;
  const int64_t width = 2 + samples.front().max_new_tokens;
  std::vector<double> table(samples.size() * static_cast<size_t>(width), 0.0);
  for (size_t i = 0; i < samples.size(); ++i) {
    if (static_cast<int>(i % static_cast<size_t>(size)) != rank) continue;
    double* row = table.data() + i * static_cast<size_t>(width);
    row[0] = out[i].mean_entropy;
    row[1] = static_cast<double>(out[i].ids.size());
    for (size_t k = 0; k < out[i].ids.size() && static_cast<int64_t>(k) + 2 < width; ++k) row[k + 2] = out[i].ids[k];
  }
  Tensor t = Tensor::from_vector(table, {static_cast<int64_t>(samples.size()), width}, DType::kF64);
  replicas->all_reduce(t);
  table = t.to_vector();
  for (size_t i = 0; i < samples.size(); ++i) {
    const double* row = table.data() + i * static_cast<size_t>(width);
    out[i].mean_entropy = row[0];
    out[i].ids.assign(static_cast<size_t>(row[1]), 0);
    for (size_t k = 0; k < out[i].ids.size(); ++k) out[i].ids[k] = static_cast<int32_t>(row[k + 2]);
  }
  return out;
}

}  // namespace

absl::StatusOr<std::vector<Cell>> run(Generator& generator, const Tokenizer& tokenizer, const Answerer& answer,
                                      const Options& options, const std::function<void(const Record&)>& record,
                                      const std::function<void(const Cell&)>& progress, Communicator* replicas) {
  ROTOR_RETURN_IF_ERROR(check_options(generator, options));
  ROTOR_ASSIGN_OR_RETURN(const std::vector<CellKey> planned, planned_cells(generator, options));
  std::vector<Cell> cells;
  for (const auto& [task, length] : planned) {
    Cell cell{.task = task, .length = length, .samples = options.samples};
    std::vector<Sample> samples;
    for (int64_t i = 0; i < options.samples; ++i) {
      ROTOR_ASSIGN_OR_RETURN(Sample s, generator.sample(task, length, i));
      samples.push_back(std::move(s));
    }
    const std::vector<Answer> answers = answer_cell(answer, samples, replicas);
    double score_sum = 0, entropy_sum = 0;
    int64_t answer_tokens = 0;
    for (size_t i = 0; i < samples.size(); ++i) {
      const Answer& a = answers[i];
      Record r{.sample = &samples[i], .output = answer_text(tokenizer, a.ids)};
      r.score = string_match_all(samples[i].answers, r.output);
      score_sum += r.score;
      cell.passed += r.score == 1.0;
      entropy_sum += a.mean_entropy * static_cast<double>(a.ids.size());
      answer_tokens += static_cast<int64_t>(a.ids.size());
      if (record) record(r);
    }
    cell.pass_rate = score_sum / static_cast<double>(cell.samples);
    cell.mean_entropy = answer_tokens ? entropy_sum / static_cast<double>(answer_tokens) : 0.0;
    cells.push_back(cell);
    if (progress) progress(cell);
  }
  return cells;
}

std::string dump_line(const Record& r) {
  const Sample& s = *r.sample;
  nlohmann::json j;
  j["task"] = task_info(s.task).name;
  j["length"] = s.length;
  j["index"] = s.index;
  j["input"] = s.input;
  j["answers"] = s.answers;
  j["output"] = r.output;
  j["score"] = r.score;
  j["tokens"] = s.ids.size();
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

absl::Status write_csv(const std::string& path, const std::string& run, int64_t step,
                       const std::vector<Cell>& cells) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path parent = fs::path(path).parent_path();
  if (!parent.empty()) fs::create_directories(parent, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat(parent.string(), ": cannot create directory: ", ec.message()));
  std::ostringstream text;
  text << kCsvHeader << "\n";
  for (const Cell& c : cells) {
    text << absl::StrFormat("%s,%d,%s,%d,%d,%d,%.8g,%.8g\n", eval::csv_field(run), step, task_info(c.task).name,
                            c.length, c.samples, c.passed, c.pass_rate, c.mean_entropy);
  }
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return absl::PermissionDeniedError(absl::StrCat(path, ": cannot open for writing"));
  out << text.str();
  out.close();
  if (!out) return absl::DataLossError(absl::StrCat(path, ": write failed"));
  return absl::OkStatus();
}

}  // namespace rotor::ruler
