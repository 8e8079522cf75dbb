#include "trainer/nonfinite.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "kernels/elementwise.h"

namespace rotor {
namespace {

// World-wide maximum of a small integer (every rank calls it).
int64_t max_over(Communicator* world, int64_t v) {
  if (world == nullptr) return v;
  Tensor t = Tensor::from_vector({static_cast<double>(v)}, {1}, DType::kF64);
  world->all_reduce(t, ReduceOp::kMax);
  return static_cast<int64_t>(t.item());
}

// "layer <l>" of an HF parameter name model.layers.<l>.*, else the name.
std::string layer_of(const std::string& name) {
  const std::string prefix = "model.layers.";
  if (name.rfind(prefix, 0) != 0) return name;
  return "layer " + name.substr(prefix.size(), name.find('.', prefix.size()) - prefix.size());
}

}  // namespace

std::string locate_nonfinite(LlamaModel& model, const std::vector<Batch>& batches, Communicator* world) {
  const std::vector<Parameter>& params = model.parameters();
  const int64_t n = static_cast<int64_t>(params.size());
  int64_t weight = n, grad = -1;  // first weight, last gradient (parameter order)
  for (int64_t i = 0; i < n; ++i) {
    if (weight == n && !std::isfinite(squared_norm(params[i].value))) weight = i;
    if (!std::isfinite(squared_norm(params[i].grad))) grad = i;
  }
  weight = n - max_over(world, n - weight);  // the minimum over ranks
  grad = max_over(world, grad);
  const int64_t layers = model.config().num_hidden_layers;
  int64_t residual = layers + 1;  // none
  for (const Batch& b : batches) {
    model.forward(b);
    const int64_t r = model.first_nonfinite_residual();
    if (r >= 0) residual = std::min(residual, r);
  }
  residual = layers + 1 - max_over(world, layers + 1 - residual);
  std::string out;
  if (residual == 0) {
    out = "first non-finite activation: the embedding output";
  } else if (residual <= layers) {
    out = absl::StrCat("first non-finite activation: the output of layer ", residual - 1);
  } else {
    out = "the forward pass is finite; first non-finite gradient (backward order): ";
    if (grad < 0) {
      out += "none";
    } else {
      out += params[grad].name;
      if (const std::string layer = layer_of(params[grad].name); layer != params[grad].name)
        absl::StrAppend(&out, " (", layer, ")");
    }
  }
  if (weight < n) absl::StrAppend(&out, "; weights: ", params[weight].name, " holds NaN or inf");
  return out;
}

std::string nonfinite_event(int64_t step, double loss, double grad_norm, LlamaModel& model,
                            const std::vector<Batch>& batches, Communicator* world) {
  if (std::isfinite(loss) && std::isfinite(grad_norm)) return "";
  return absl::StrCat("step ", step, ": non-finite ",
                      std::isfinite(loss) ? "" : absl::StrCat("loss (", loss, ") and "), "gradient norm (",
                      grad_norm, "); ", locate_nonfinite(model, batches, world));
}

NonfinitePolicy NonfinitePolicy::of(const recipe::TrainSection& train) {
  return NonfinitePolicy(train.on_nonfinite() == recipe::TrainSection::skip, train.max_skipped_steps());
}

absl::Status NonfinitePolicy::after_step(const std::string& event) {
  if (event.empty()) {
    skipped_in_row_ = 0;
    return absl::OkStatus();
  }
  if (!skip_) return absl::DataLossError(absl::StrCat(event, "; stopping (train.on_nonfinite: stop)"));
  if (++skipped_in_row_ > max_skips_) {
    return absl::DataLossError(absl::StrCat(event, "; stopping: ", skipped_in_row_,
                                            " steps in a row skipped (train.max_skipped_steps: ", max_skips_, ")"));
  }
  return absl::OkStatus();
}

}  // namespace rotor
