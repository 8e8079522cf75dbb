// Perplexity vs length; see ppl.h.
#include "eval/ppl.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "eval/csv.h"
#include "kernels/status.h"

namespace rotor::eval {
namespace {

// Tokens of document `doc` (its sequences concatenated), at most `limit`.
absl::StatusOr<std::vector<int32_t>> read_document(const IndexedDataset& ds, int64_t doc,
                                                   int64_t limit) {
  const auto [first, last] = ds.document_range(doc);
  std::vector<int32_t> out;
  for (int64_t s = first; s < last && static_cast<int64_t>(out.size()) < limit; ++s) {
    const int64_t n = std::min(ds.sequence_length(s), limit - static_cast<int64_t>(out.size()));
    const size_t at = out.size();
    out.resize(at + static_cast<size_t>(n));
    if (absl::Status st = ds.read(s, 0, n, out.data() + at); !st.ok()) {
      return with_context(st, absl::StrCat(ds.prefix(), ": document ", doc, ": "));
    }
  }
  return out;
}

int64_t document_tokens(const IndexedDataset& ds, int64_t doc) {
  const auto [first, last] = ds.document_range(doc);
  int64_t n = 0;
  for (int64_t s = first; s < last; ++s) n += ds.sequence_length(s);
  return n;
}

// Sums of one length on this rank, added over dp_cp at the end.
struct Sums {
  std::vector<double> bucket_loss, bucket_tokens;
  double loss = 0, tokens = 0;
};

void add_pass(LlamaModel& model, std::span<const PplWindow> windows, int64_t length,
              int64_t width, const ParallelContext& par, Sums& sums) {
  const Batch shard = shard_for_context(window_batch(windows, length), par);
  ForwardStats stats;
  model.evaluate(shard, stats);
  const std::vector<double> loss = stats.token_loss.to(Device::cpu()).to_vector();
  const int32_t* targets = shard.targets.data<int32_t>();
  const int32_t* positions = shard.positions.data<int32_t>();
  const int64_t nb = static_cast<int64_t>(sums.bucket_loss.size());
  for (int64_t i = 0; i < shard.targets.numel(); ++i) {
    if (targets[i] < 0) continue;
    const int64_t b = std::min<int64_t>(bucket_index(positions[i], width), nb - 1);
    sums.bucket_loss[static_cast<size_t>(b)] += loss[static_cast<size_t>(i)];
    sums.bucket_tokens[static_cast<size_t>(b)] += 1;
    sums.loss += loss[static_cast<size_t>(i)];
    sums.tokens += 1;
  }
}

absl::StatusOr<LengthPerplexity> perplexity_at_length(LlamaModel& model, const IndexedDataset& heldout,
                                                      int64_t length, const PplOptions& o,
                                                      const ParallelContext& par) {
  if (length < 1) return absl::InvalidArgumentError(absl::StrCat("length ", length, " must be >= 1"));
  if (o.stride < 0 || o.stride > length) {
    return absl::InvalidArgumentError(
        absl::StrCat("--stride ", o.stride, " must be in [1, length ", length, "] (0: no sliding window)"));
  }
  if (par.cp_size() > 1 && length % (2 * par.cp_size()) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("length ", length, " must be a multiple of 2 * cp (",
                                                   2 * par.cp_size(), ") under context parallelism"));
  }
  LengthPerplexity r;
  r.length = length;
  r.bucket_width = default_bucket_width(length, o.bucket_width);
  for (PositionBucket& b : position_buckets(length, r.bucket_width)) r.buckets.push_back({.bucket = b});
  Sums sums;
  sums.bucket_loss.assign(r.buckets.size(), 0.0);
  sums.bucket_tokens.assign(r.buckets.size(), 0.0);

  const int64_t rows = o.rows_per_pass > 0 ? o.rows_per_pass : std::max<int64_t>(1, 16384 / length);
  std::vector<PplWindow> pending;
  for (int64_t doc = 0; doc < heldout.num_documents(); ++doc) {
    if (o.max_documents > 0 && r.documents >= o.max_documents) break;
    const int64_t n = document_tokens(heldout, doc);
    if (n < length + 1) {
      ++r.skipped;
      continue;
    }
    ROTOR_ASSIGN_OR_RETURN(std::vector<int32_t> tokens, read_document(heldout, doc, o.stride > 0 ? n : length + 1));
    ++r.documents;
    for (PplWindow& w : document_windows(tokens, length, o.stride)) {
      w.document = doc;
      if (r.windows++ % par.dp_size() != par.dp_rank()) continue;
      pending.push_back(std::move(w));
      if (static_cast<int64_t>(pending.size()) == rows) {
        add_pass(model, pending, length, r.bucket_width, par, sums);
        pending.clear();
      }
    }
  }
  if (!pending.empty()) add_pass(model, pending, length, r.bucket_width, par, sums);

  // One all-reduce of [bucket losses, bucket tokens, loss, tokens] over dp and cp.
  std::vector<double> flat = sums.bucket_loss;
  flat.insert(flat.end(), sums.bucket_tokens.begin(), sums.bucket_tokens.end());
  flat.push_back(sums.loss);
  flat.push_back(sums.tokens);
  if (par.dp_cp->size() > 1) {
    Tensor t = Tensor::from_vector(flat, {static_cast<int64_t>(flat.size())}, DType::kF64);
    par.dp_cp->all_reduce(t);
    flat = t.to_vector();
  }
  const size_t nb = r.buckets.size();
  for (size_t b = 0; b < nb; ++b) {
    r.buckets[b].loss_sum = flat[b];
    r.buckets[b].tokens = std::llround(flat[nb + b]);
  }
  r.loss_sum = flat[2 * nb];
  r.tokens = std::llround(flat[2 * nb + 1]);
  return r;
}

}  // namespace

int64_t default_bucket_width(int64_t length, int64_t requested) {
  if (requested > 0) return requested;
  int64_t w = 1024;
  while (w > 1 && w * 4 > length) w /= 2;
  return w;
}

std::vector<PplWindow> document_windows(std::span<const int32_t> tokens, int64_t length,
                                        int64_t stride) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  std::vector<PplWindow> out;
  if (length < 1 || n < length + 1) return out;
  auto window = [&](int64_t begin, int64_t end_input, int64_t first_scored) {
    PplWindow w;
    w.ids.assign(tokens.begin() + begin, tokens.begin() + end_input + 1);
    w.first_scored = first_scored;
    out.push_back(std::move(w));
  };
  if (stride <= 0) {
    window(0, length, 0);
    return out;
  }
  // Inputs [begin, end) predict targets begin+1..end; `scored_to` is the end
  // of the inputs whose targets are already counted.
  int64_t scored_to = 0;
  for (int64_t begin = 0;; begin += stride) {
    const int64_t end = std::min(begin + length, n - 1);
    window(begin, end, std::max(scored_to, begin) - begin);
    scored_to = end;
    if (end == n - 1) break;
  }
  return out;
}

Batch window_batch(std::span<const PplWindow> windows, int64_t length) {
  const int64_t rows = static_cast<int64_t>(windows.size());
  Batch b;
  b.input_ids = Tensor::zeros({rows, length}, DType::kI32);
  b.targets = Tensor::empty({rows, length}, DType::kI32);
  b.positions = Tensor::empty({rows, length}, DType::kI32);
  for (int64_t r = 0; r < rows; ++r) {
    const PplWindow& w = windows[static_cast<size_t>(r)];
    const int64_t inputs = static_cast<int64_t>(w.ids.size()) - 1;
    int32_t* ids = b.input_ids.data<int32_t>() + r * length;
    int32_t* targets = b.targets.data<int32_t>() + r * length;
    int32_t* positions = b.positions.data<int32_t>() + r * length;
    for (int64_t t = 0; t < length; ++t) {
      const bool real = t < inputs;
      if (real) ids[t] = w.ids[static_cast<size_t>(t)];
      targets[t] = real && t >= w.first_scored ? w.ids[static_cast<size_t>(t + 1)] : -1;
      positions[t] = static_cast<int32_t>(t);
    }
  }
  return b;
}

absl::StatusOr<std::vector<LengthPerplexity>> perplexity_at_lengths(
    LlamaModel& model, const IndexedDataset& heldout, const PplOptions& options,
    const ParallelContext& parallel) {
  if (options.lengths.empty()) return absl::InvalidArgumentError("no lengths to evaluate (eval.lengths is empty)");
  std::vector<LengthPerplexity> out;
  for (int64_t length : options.lengths) {
    ROTOR_ASSIGN_OR_RETURN(LengthPerplexity r, perplexity_at_length(model, heldout, length, options, parallel));
    out.push_back(std::move(r));
  }
  return out;
}

absl::StatusOr<std::vector<LengthPerplexity>> perplexity_by_length(
    LlamaModel& model, const IndexedDataset& heldout, const PplRun& run, const ParallelContext& parallel) {
  std::vector<LengthPerplexity> results;
  for (int64_t length : run.lengths) {
    PplOptions o;
    o.lengths = {length};
    o.stride = run.stride;
    o.max_documents = run.documents > 0 ? run.documents : std::max<int64_t>(1, run.token_budget / length);
    absl::StatusOr<std::vector<LengthPerplexity>> p = perplexity_at_lengths(model, heldout, o, parallel);
    if (!p.ok()) return absl::InvalidArgumentError(absl::StrCat("length ", length, ": ", p.status().message()));
    results.push_back(p->front());
  }
  return results;
}

std::vector<std::string> ppl_csv_rows(const std::string& run, int64_t step, int64_t train_length,
                                      std::span<const LengthPerplexity> results) {
  std::vector<std::string> rows;
  auto row = [&](const LengthPerplexity& p, const std::string& bucket, int64_t tokens, double loss) {
    rows.push_back(absl::StrFormat("%s,%d,%d,%d,%s,%d,%d,%.8g,%.8g", csv_field(run), step, train_length,
                                   p.length, bucket, p.documents, tokens, loss, std::exp(loss)));
  };
  for (const LengthPerplexity& p : results) {
    row(p, "all", p.tokens, p.mean_loss());
    for (const BucketLoss& b : p.buckets) row(p, b.bucket.label, b.tokens, b.mean_loss());
  }
  return rows;
}

absl::StatusOr<std::vector<PplWindow>> leading_windows(const IndexedDataset& heldout, int64_t length,
                                                       int64_t documents) {
  std::vector<PplWindow> windows;
  for (int64_t d = 0; d < heldout.num_documents() && static_cast<int64_t>(windows.size()) < documents; ++d) {
    ROTOR_ASSIGN_OR_RETURN(std::vector<int32_t> tokens, read_document(heldout, d, length + 1));
    for (PplWindow& w : document_windows(tokens, length, 0)) {
      w.document = d;
      windows.push_back(std::move(w));
    }
  }
  return windows;
}

}  // namespace rotor::eval
