#include "trainer/metrics.h"

#include <algorithm>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "trainer/checkpoint.h"
#include "kernels/status.h"

namespace rotor {
namespace {

namespace fs = std::filesystem;

std::string duration(double seconds) {
  const int64_t s = static_cast<int64_t>(seconds);
  return absl::StrFormat("%dm%02ds", s / 60, s % 60);
}

// The held-out numbers of the record (see metrics.h); per layer at the
// longest of eval.lengths only.
void add_evals(nlohmann::json& rec, const StepEvals& evals, const std::vector<int64_t>& lengths) {
  if (evals.empty()) return;
  const int64_t longest = *std::max_element(lengths.begin(), lengths.end());
  for (const auto& [l, e] : evals) {
    rec[absl::StrCat("eval_loss_", l)] = e.loss;
    double mean = 0;
    for (double h : e.layer_entropy) mean += h / static_cast<double>(e.layer_entropy.size());
    rec[absl::StrCat("eval_entropy_", l)] = mean;
    if (l != longest) continue;
    for (size_t layer = 0; layer < e.layer_entropy.size(); ++layer)
      rec[absl::StrCat("eval_entropy_", l, "_layer", layer)] = e.layer_entropy[layer];
  }
}

// Tags: train/<key> for the step's numbers, eval/<key without eval_> for the held-out ones.
std::vector<std::pair<std::string, double>> scalars_of(const nlohmann::json& rec) {
  std::vector<std::pair<std::string, double>> scalars;
  for (const auto& [key, value] : rec.items()) {
    if (key == "step" || !value.is_number()) continue;
    scalars.emplace_back(absl::StartsWith(key, "eval_") ? "eval/" + key.substr(5) : "train/" + key,
                         value.get<double>());
  }
  return scalars;
}

}  // namespace

MetricsSettings MetricsSettings::of(const recipe::Recipe& r, const LlamaConfig& model, int64_t tokens_per_step,
                                    int world_size) {
  return {.run_dir = r.run().dir(),
          .steps = r.train().steps(),
          .tokens_per_step = tokens_per_step,
          .flops_per_token = model.training_flops_per_token(r.data().sequence_length()),
          .peak_tflops = r.run().has_peak_tflops() ? r.run().peak_tflops() : 0.0,
          .log_every = r.run().log_interval(),
          .world_size = world_size,
          .eval_lengths = {r.eval().lengths().begin(), r.eval().lengths().end()},
          .sequence_length = r.data().sequence_length()};
}

absl::Status truncate_metrics(const std::string& path, int64_t last_step) {
  std::ifstream in(path);
  if (!in) return absl::OkStatus();
  std::string kept, line;
  while (std::getline(in, line)) {
    const nlohmann::json rec = nlohmann::json::parse(line, nullptr, false);
    if (!rec.is_discarded() && rec.value("step", int64_t{0}) <= last_step) kept += line + "\n";
  }
  in.close();
  const fs::path tmp = path + ".tmp";
  ROTOR_RETURN_IF_ERROR(write_text(tmp, kept));
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) return absl::DataLossError(absl::StrCat("rename ", tmp.string(), ": ", ec.message()));
  return absl::OkStatus();
}

absl::StatusOr<Metrics> Metrics::open(const MetricsSettings& settings, bool rank0, std::ostream& out,
                                      int64_t start_step, bool resumed) {
  Metrics m(settings, rank0, out, start_step);
  if (!rank0) return m;
  const fs::path jsonl = fs::path(settings.run_dir) / "metrics.jsonl";
  if (resumed) {
    ROTOR_RETURN_IF_ERROR(truncate_metrics(jsonl.string(), start_step));
  }
  m.jsonl_.open(jsonl, std::ios::app);
  ROTOR_ASSIGN_OR_RETURN(TensorBoardWriter tb, TensorBoardWriter::open((fs::path(settings.run_dir) / "tb").string()));
  m.tb_ = std::move(tb);
  m.t0_ = Clock::now();
  return m;
}

void Metrics::begin_stage(const MetricsSettings& settings, int64_t last_step) {
  settings_ = settings;
  pace_from_ = last_step;
  t0_ = Clock::now();
}

void Metrics::begin_step() { step_start_ = Clock::now(); }

void Metrics::end_step() {
  const Clock::time_point now = Clock::now();
  step_seconds_ = std::chrono::duration<double>(now - step_start_).count();
  elapsed_seconds_ = std::chrono::duration<double>(now - t0_).count();
}

void Metrics::report_skipped(const TrainStepResult& result) {
  *out_ << "step " << result.step << "/" << settings_.steps << " | skipped: " << result.nonfinite << std::endl;
}

absl::Status Metrics::log(const TrainStepResult& result, bool evaluated, const StepEvals& evals) {
  const int64_t step = result.step;
  const double tps = static_cast<double>(settings_.tokens_per_step) / step_seconds_;
  // Model FLOPs per second per rank (see LlamaConfig), the numerator of MFU.
  const double tflops = tps * settings_.flops_per_token / 1e12 / static_cast<double>(settings_.world_size);
  nlohmann::json rec = {{"step", step}, {"sequence_length", settings_.sequence_length}};
  if (!settings_.stage.empty()) rec["stage"] = settings_.stage;
  rec["lr"] = result.lr;
  rec["tokens_per_s"] = tps;
  rec["tflops"] = tflops;
  if (result.applied()) {
    rec["loss"] = result.loss.mean();
    rec["grad_norm"] = result.grad_norm;
  } else {
    rec["skipped"] = result.nonfinite;  // a skipped step's record: no loss, no grad_norm
  }
  if (settings_.peak_tflops > 0) rec["mfu"] = tflops / settings_.peak_tflops;
  add_evals(rec, evals, settings_.eval_lengths);
  if (rank0_) {
    jsonl_ << rec.dump() << "\n";
    jsonl_.flush();
    if (!jsonl_) {
      return absl::DataLossError(absl::StrCat(settings_.run_dir, "/metrics.jsonl: write failed (disk full?)"));
    }
  }
  const double wall = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  if (tb_) {
    ROTOR_RETURN_IF_ERROR(tb_->add_scalars(step, scalars_of(rec), wall));
  }
  const bool due = step == pace_from_ + 1 || step == settings_.steps || step % settings_.log_every == 0;
  if (!result.applied() || !(due || evaluated)) return absl::OkStatus();
  *out_ << "step " << step << "/" << settings_.steps;
  if (!settings_.stage.empty()) *out_ << " | stage " << settings_.stage;
  *out_ << absl::StrFormat(" | loss %.4f | lr %.2e | grad norm %.3f | %.0f tok/s | %.3g TFLOP/s",
                           result.loss.mean(), result.lr, result.grad_norm, tps, tflops);
  if (settings_.peak_tflops > 0) *out_ << absl::StrFormat(" | MFU %.1f%%", 100 * tflops / settings_.peak_tflops);
  *out_ << " | ETA "
        << duration(elapsed_seconds_ / static_cast<double>(step - pace_from_) *
                    static_cast<double>(settings_.steps - step));
  for (int64_t l : settings_.eval_lengths)
    if (rec.contains(absl::StrCat("eval_loss_", l)))
      *out_ << absl::StrFormat(" | eval@%d %.4f", l, rec[absl::StrCat("eval_loss_", l)].get<double>());
  *out_ << std::endl;
  return absl::OkStatus();
}

}  // namespace rotor
