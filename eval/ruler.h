// RULER scored: the samples of eval/ruler_tasks.h answered greedily by a
// model (an Answerer of eval/retrieval.h: KV-cache decoding on one rank,
// recomputation in tp/cp layouts) and scored as RULER scores them.
//
// Scoring (RULER's string_match_all): the answer text, stripped, with control
// characters turned into newlines, scores the fraction of the expected
// strings it contains (case-insensitive). A sample passes when it scores 1.
// Each (task, length) cell reports samples, passed, pass_rate = the mean
// score (RULER's number, x100 in its tables) and mean_entropy: the mean
// attention entropy (nats, over layers, heads and answer tokens) of the query
// rows that produced the answer, as passkey.csv has.
//
//   ruler::Generator gen(*tokenizer, resources, seed);
//   absl::StatusOr<std::vector<ruler::Cell>> cells = ruler::run(gen, *tokenizer, answer, options);
//   ruler::write_csv(out + "/ruler.csv", run_name, step, *cells);
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "data/tokenizer.h"
#include "eval/retrieval.h"
#include "eval/ruler_tasks.h"
#include "parallel/communicator.h"

namespace rotor::ruler {

// RULER's postprocessing of an answer: strip, control characters -> '\n', strip.
std::string postprocess(const std::string& answer);
// string_match_all of one answer: the fraction of `expected` found in it,
// case-insensitive (0 when `expected` is empty).
double string_match_all(const std::vector<std::string>& expected, const std::string& answer);

struct Options {
  std::vector<Task> tasks;      // default: every task
  std::vector<int64_t> lengths;  // tokens
  int64_t samples = 20;          // per (task, length)
  // Leave out the (task, length) cells whose length is below the task's
  // Generator::minimum_length instead of failing on them (`rotor eval ruler`
  // without --tasks: every task that fits each length).
  bool fitting_only = false;
};

// One (task, length) cell of the grid.
struct CellKey {
  Task task = Task::kNiahSingle1;
  int64_t length = 0;
};

// The cells `options` asks for, tasks outer, lengths inner: the whole grid,
// or with fitting_only the cells whose length holds the task.
absl::StatusOr<std::vector<CellKey>> planned_cells(Generator& generator, const Options& options);

struct Cell {
  Task task = Task::kNiahSingle1;
  int64_t length = 0;
  int64_t samples = 0;
  int64_t passed = 0;        // samples scoring 1
  double pass_rate = 0;      // the mean score
  double mean_entropy = 0;   // over the answer tokens of every sample
};

// One answered sample (the --dump record).
struct Record {
  const Sample* sample = nullptr;
  std::string output;  // the decoded answer
  double score = 0;
};

// Checks every planned cell before any answering: sample 0 of each is
// generated (a length too short for a task fails here, with the minimum;
// with fitting_only, no cell at all fails).
absl::Status check_options(Generator& generator, const Options& options);

// Runs the planned cells, tasks outer, lengths inner. `record` (optional) sees every
// answered sample, in order, once its cell is done; `progress` (optional)
// every finished cell. With `replicas` (the data-parallel group of a
// layout; size > 1) the samples are spread over it, sample i answered by
// replica i % size, and one all-reduce per cell gives every rank every
// answer (its ids and entropy), so every rank returns the same cells and
// records as one rank answering them all. Collective over `replicas` and
// over the answerer's group.
absl::StatusOr<std::vector<Cell>> run(Generator& generator, const Tokenizer& tokenizer, const Answerer& answer,
                                      const Options& options,
                                      const std::function<void(const Record&)>& record = nullptr,
                                      const std::function<void(const Cell&)>& progress = nullptr,
                                      Communicator* replicas = nullptr);

// One JSON line (no newline) of a record: task, length, index, input,
// answers, output, score, tokens (the prompt's length in tokens). Invalid
// UTF-8 in the output (a byte model can stop mid-character) becomes U+FFFD.
std::string dump_line(const Record& record);

// The CSV header, exactly "run,step,task,length,samples,passed,pass_rate,mean_entropy".
extern const char kCsvHeader[];
// Writes the header and one row per cell to `path` (parent directories created).
absl::Status write_csv(const std::string& path, const std::string& run, int64_t step,
                       const std::vector<Cell>& cells);

}  // namespace rotor::ruler
