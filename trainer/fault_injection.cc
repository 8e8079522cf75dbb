#include "trainer/fault_injection.h"

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace rotor {
namespace {

absl::Status bad(const std::string& part, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat("ROTOR_FAULT: '", part, "': ", why));
}

// The weight a nan_activation fault poisons, and the gradient a nan_grad one does.
std::string norm_of(int64_t layer) { return absl::StrCat("model.layers.", layer, ".input_layernorm.weight"); }
std::string down_proj_of(int64_t layer) { return absl::StrCat("model.layers.", layer, ".mlp.down_proj.weight"); }

Parameter& find_or_die(LlamaModel& model, const std::string& name) {
  Parameter* p = model.find(name);
  ROTOR_CHECK(p != nullptr) << "ROTOR_FAULT names a layer the model lacks (" << name << ")";
  return *p;
}

// Element 0 of `t` becomes NaN (any dtype and device).
void poison(const Tensor& t) { t.view({t.numel()}).narrow(0, 1).fill(std::numeric_limits<double>::quiet_NaN()); }

}  // namespace

absl::StatusOr<FaultPlan> FaultPlan::parse(const std::string& spec) {
  static const std::map<std::string, Fault::Kind> kinds = {
      {"kill", Fault::kKill},
      {"fail", Fault::kFail},
      {"kill_checkpoint", Fault::kKillCheckpoint},
      {"nan_activation", Fault::kNanActivation},
      {"nan_grad", Fault::kNanGrad}};
  FaultPlan plan;
  for (absl::string_view part : absl::StrSplit(spec, ';', absl::SkipWhitespace())) {
    const std::string p(absl::StripAsciiWhitespace(part));
    std::pair<std::string, std::string> kv = absl::StrSplit(p, absl::MaxSplits(':', 1));
    auto kind = kinds.find(kv.first);
    if (kind == kinds.end()) {
      return bad(p, "unknown fault (kill, fail, kill_checkpoint, nan_activation, nan_grad)");
    }
    Fault f;
    f.kind = kind->second;
    bool has_step = false;
    for (absl::string_view arg : absl::StrSplit(kv.second, ',', absl::SkipWhitespace())) {
      std::pair<std::string, std::string> a = absl::StrSplit(arg, absl::MaxSplits('=', 1));
      int64_t v = 0;
      if (!absl::SimpleAtoi(a.second, &v) || v < 0) return bad(p, absl::StrCat("'", arg, "' is not KEY=N"));
      if (a.first == "step") {
        f.step = v;
        has_step = v >= 1;
      } else if (a.first == "rank") {
        f.rank = static_cast<int>(v);
      } else if (a.first == "layer") {
        f.layer = v;
      } else if (a.first == "stage") {
        if (v < 1 || v > 4) return bad(p, "stage must be 1..4");
        f.stage = static_cast<int>(v);
      } else {
        return bad(p, absl::StrCat("unknown argument '", a.first, "' (step, rank, layer, stage)"));
      }
    }
    if (!has_step) return bad(p, "step=S (S >= 1) is required");
    if (f.kind == Fault::kKillCheckpoint && f.stage == 0) return bad(p, "kill_checkpoint needs stage=1..4");
    plan.faults_.push_back(f);
  }
  return plan;
}

absl::StatusOr<FaultPlan> FaultPlan::from_env() {
  const char* spec = std::getenv("ROTOR_FAULT");
  if (spec == nullptr) return FaultPlan();
  return parse(spec);
}

absl::Status FaultPlan::at_step_start(int64_t step, int rank) {
  for (const Fault& f : faults_) {
    if (f.step != step || f.rank != rank) continue;
    if (f.kind == Fault::kKill) {
      std::fprintf(stderr, "rotor: ROTOR_FAULT: killing rank %d at the start of step %ld\n", rank,
                   static_cast<long>(step));
      std::fflush(stderr);
      std::raise(SIGKILL);
    }
    if (f.kind == Fault::kFail) return absl::InternalError(absl::StrCat("step ", step, ": injected failure (ROTOR_FAULT)"));
  }
  return absl::OkStatus();
}

void FaultPlan::before_forward(int64_t step, LlamaModel& model) {
  for (const Fault& f : faults_) {
    if (f.kind != Fault::kNanActivation || f.step != step) continue;
    Parameter& p = find_or_die(model, norm_of(f.layer));
    saved_.emplace_back(&p, p.value.clone());
    poison(p.value);
  }
}

void FaultPlan::before_update(int64_t /*step*/, LlamaModel& /*model*/) { restore_weights(); }

void FaultPlan::restore_weights() {
  for (auto& [p, value] : saved_) p->value.copy_from(value);
  saved_.clear();
}

void FaultPlan::after_backward(int64_t step, LlamaModel& model) {
  for (const Fault& f : faults_)
    if (f.kind == Fault::kNanGrad && f.step == step) poison(find_or_die(model, down_proj_of(f.layer)).grad);
}

void FaultPlan::at_checkpoint_stage(int64_t step, int stage) {
  for (const Fault& f : faults_) {
    if (f.kind != Fault::kKillCheckpoint || f.step != step || f.stage != stage) continue;
    std::fprintf(stderr, "rotor: ROTOR_FAULT: killed while writing the checkpoint of step %ld (stage %d)\n",
                 static_cast<long>(step), stage);
    std::fflush(stderr);
    std::raise(SIGKILL);
  }
}

}  // namespace rotor
