// `rotor prep`: text or JSONL -> Megatron indexed dataset. See prep.h.
#include "data/prep.h"

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "data/indexed_dataset.h"
#include "data/tokenizer.h"
#include "nlohmann/json.hpp"
#include "kernels/status.h"

namespace rotor {
namespace {

using Clock = std::chrono::steady_clock;

absl::Status annotate(const absl::Status& s, const std::string& where) {
  return with_context(s, absl::StrCat(where, ": "));
}

// Counts what was written and prints the progress line at most every interval.
class Progress {
 public:
  Progress(std::ostream& os, double interval_s)
      : os_(os), interval_s_(interval_s), start_(Clock::now()), last_(start_) {}

  void add(int64_t tokens) {
    ++documents_;
    tokens_ += tokens;
    const Clock::time_point now = Clock::now();
    if (std::chrono::duration<double>(now - last_).count() >= interval_s_) {
      last_ = now;
      os_ << "\r" << line(now) << std::flush;
      printed_ = true;
    }
  }

  PrepStats finish(const std::string& output) {
    const Clock::time_point now = Clock::now();
    if (printed_) os_ << "\r";
    os_ << line(now) << " -> " << output << ".bin, " << output << ".idx\n" << std::flush;
    return PrepStats{documents_, tokens_, seconds(now)};
  }

 private:
  double seconds(Clock::time_point now) const {
    return std::chrono::duration<double>(now - start_).count();
  }

  std::string line(Clock::time_point now) const {
    const double s = seconds(now);
    const double docs_per_s = s > 0 ? documents_ / s : 0.0;
    const double tokens_per_s = s > 0 ? tokens_ / s : 0.0;
    return absl::StrFormat("prep: %d documents, %d tokens, %.1f documents/s, %.1f tokens/s",
                           documents_, tokens_, docs_per_s, tokens_per_s);
  }

  std::ostream& os_;
  double interval_s_;
  Clock::time_point start_;
  Clock::time_point last_;
  int64_t documents_ = 0;
  int64_t tokens_ = 0;
  bool printed_ = false;
};

struct Prep {
  const Tokenizer& tokenizer;
  IndexedDatasetWriter& writer;
  Progress& progress;
  std::vector<int64_t> buffer;

  // Tokenizes one document, appends eos, writes it as one sequence and document.
  absl::Status add_document(const std::string& text, const std::string& where) {
    absl::StatusOr<std::vector<int32_t>> ids = tokenizer.encode(text);
    if (!ids.ok()) return annotate(ids.status(), where);
    buffer.assign(ids->begin(), ids->end());
    buffer.push_back(tokenizer.eos_id());
    if (absl::Status s = writer.add_sequence(buffer); !s.ok()) return annotate(s, where);
    writer.end_document();
    progress.add(static_cast<int64_t>(buffer.size()));
    return absl::OkStatus();
  }
};

absl::StatusOr<std::ifstream> open_input(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("cannot open input '", path, "': ", std::strerror(errno)));
  }
  return in;
}

absl::Status prep_text(const std::string& path, Prep& prep) {
  ROTOR_ASSIGN_OR_RETURN(std::ifstream in, open_input(path));
  std::ostringstream contents;
  contents << in.rdbuf();
  if (in.bad() || contents.bad()) {
    return absl::DataLossError(absl::StrCat("cannot read input '", path, "'"));
  }
  return prep.add_document(contents.str(), path);
}

absl::Status prep_jsonl(const std::string& path, const std::string& key, Prep& prep) {
  ROTOR_ASSIGN_OR_RETURN(std::ifstream in, open_input(path));
  std::string line;
  int64_t line_number = 0;
  while (std::getline(in, line)) {
    ++line_number;
    const std::string where = absl::StrCat(path, ":", line_number);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (absl::StripAsciiWhitespace(line).empty()) continue;
    nlohmann::json record;
    try {
      record = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": invalid JSON: ", e.what()));
    }
    if (!record.is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": expected a JSON object, got ", record.type_name()));
    }
    const auto it = record.find(key);
    if (it == record.end()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": missing key '", key, "'"));
    }
    if (!it->is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": key '", key, "' is not a string (", it->type_name(), ")"));
    }
    if (absl::Status s = prep.add_document(it->get_ref<const std::string&>(), where); !s.ok()) {
      return s;
    }
  }
  if (in.bad()) return absl::DataLossError(absl::StrCat("cannot read input '", path, "'"));
  return absl::OkStatus();
}

}  // namespace

absl::Status prep_dataset(const PrepOptions& options, std::ostream& progress_os, PrepStats* stats) {
  if (options.inputs.empty()) return absl::InvalidArgumentError("no input files");
  if (options.output.empty()) return absl::InvalidArgumentError("no output prefix");
  if (options.jsonl_key && options.jsonl_key->empty()) {
    return absl::InvalidArgumentError("the JSONL key is empty");
  }
  ROTOR_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer, make_tokenizer(options.tokenizer));
  const Tokenizer& tok = *tokenizer;
  if (tok.eos_id() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer '", tok.spec(), "' has no end-of-document (eos) token"));
  }
  // Every input must exist before anything is written.
  for (const std::string& path : options.inputs) {
    ROTOR_ASSIGN_OR_RETURN(std::ifstream in, open_input(path));

  }
  const TokenDType dtype = tok.vocab_size() < 65536 ? TokenDType::kUint16 : TokenDType::kInt32;
  ROTOR_ASSIGN_OR_RETURN(IndexedDatasetWriter writer, IndexedDatasetWriter::create(options.output, dtype));

  Progress progress(progress_os, options.progress_interval_s);
  Prep prep{tok, writer, progress, {}};
  for (const std::string& path : options.inputs) {
    const bool jsonl = options.jsonl_key.has_value() || absl::EndsWith(path, ".jsonl");
    absl::Status s = jsonl ? prep_jsonl(path, options.jsonl_key.value_or(kDefaultJsonlKey), prep)
                           : prep_text(path, prep);
    if (!s.ok()) return s;  // the writer's destructor removes its .tmp files
  }
  ROTOR_RETURN_IF_ERROR(writer.finalize());
  const PrepStats totals = progress.finish(options.output);
  if (stats != nullptr) *stats = totals;
  return absl::OkStatus();
}

}  // namespace rotor
