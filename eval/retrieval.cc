// Passkey and needle grids. See retrieval.h.
#include "eval/retrieval.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "data/indexed_dataset.h"
#include "eval/csv.h"
#include "kernels/random.h"
#include "model/decode.h"
#include "parallel/context.h"
#include "kernels/status.h"

namespace rotor {

const char kRetrievalCsvHeader[] = "run,step,length,depth,trials,passed,pass_rate,mean_entropy";

namespace {

absl::StatusOr<std::vector<int32_t>> encode(const Tokenizer& t, const std::string& text) {
  absl::StatusOr<std::vector<int32_t>> ids = t.encode(text);
  if (!ids.ok()) {
    return absl::Status(ids.status().code(),
                        absl::StrCat("tokenizer ", t.spec(), ": ", ids.status().message()));
  }
  return ids;
}

// Filler tokens available once the fixed pieces are placed; an error when
// there is no room for one.
absl::StatusOr<int64_t> filler_tokens(const char* kind, int64_t length, int64_t fixed) {
  if (length - fixed < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "length ", length, " is too short for the ", kind, " prompt: its instruction, ",
        "inserted sentence and question take ", fixed, " tokens (use lengths of at least ",
        fixed + 1, ")"));
  }
  return length - fixed;
}

RetrievalPrompt assemble(const std::vector<int32_t>& instruction, const std::vector<int32_t>& filler,
                         int64_t insert_at, const std::vector<int32_t>& sentence,
                         const std::vector<int32_t>& question) {
  RetrievalPrompt p;
  p.ids = instruction;
  p.ids.insert(p.ids.end(), filler.begin(), filler.begin() + insert_at);
  p.insert_at = static_cast<int64_t>(p.ids.size());
  p.ids.insert(p.ids.end(), sentence.begin(), sentence.end());
  p.ids.insert(p.ids.end(), filler.begin() + insert_at, filler.end());
  p.ids.insert(p.ids.end(), question.begin(), question.end());
  return p;
}

std::vector<std::string> words_of(const std::string& text) {
  std::vector<std::string> words;
  std::string w;
  for (char ch : text) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if (std::isalnum(c)) {
      w += static_cast<char>(std::tolower(c));
    } else if (!w.empty()) {
      words.push_back(w);
      w.clear();
    }
  }
  if (!w.empty()) words.push_back(w);
  return words;
}

uint64_t trial_seed(uint64_t seed, int64_t length, size_t depth_index, int64_t trial) {
  return mix64(seed ^ mix64(static_cast<uint64_t>(length) * 1000003u +
                            static_cast<uint64_t>(depth_index) * 7919u + static_cast<uint64_t>(trial)));
}

}  // namespace

std::string answer_text(const Tokenizer& t, const std::vector<int32_t>& ids) {
  std::vector<int32_t> kept;
  for (int32_t id : ids)
    if (id >= 0 && id < t.vocab_size() && id != t.eos_id() && id != t.bos_id()) kept.push_back(id);
  absl::StatusOr<std::string> s = t.decode(kept);
  return s.ok() ? *s : std::string();
}

const char* retrieval_kind_name(RetrievalKind kind) {
  return kind == RetrievalKind::kPasskey ? "passkey" : "needle";
}

absl::StatusOr<RetrievalPrompt> passkey_prompt(const Tokenizer& tokenizer, int64_t length,
                                               double depth, int64_t key) {
  const std::string digits = std::to_string(key);
  absl::StatusOr<std::vector<int32_t>> instruction = encode(tokenizer, kPasskeyInstruction);
  absl::StatusOr<std::vector<int32_t>> unit = encode(tokenizer, kPasskeyFiller);
  absl::StatusOr<std::vector<int32_t>> sentence = encode(
      tokenizer, absl::StrCat("The pass key is ", digits, ". Remember it. ", digits, " is the pass key. "));
  absl::StatusOr<std::vector<int32_t>> question = encode(tokenizer, kPasskeyQuestion);
  for (const auto* s : {&instruction, &unit, &sentence, &question})
    if (!s->ok()) return s->status();
  ROTOR_CHECK(!unit->empty());
  ROTOR_ASSIGN_OR_RETURN(int64_t f, filler_tokens(
      "passkey", length,
      static_cast<int64_t>(instruction->size() + sentence->size() + question->size())));
  std::vector<int32_t> filler;
  while (static_cast<int64_t>(filler.size()) < f) filler.insert(filler.end(), unit->begin(), unit->end());
  filler.resize(static_cast<size_t>(f));
  // The repetition boundary (or the filler's end) nearest to depth * F.
  const int64_t u = static_cast<int64_t>(unit->size());
  const double target = std::clamp(depth, 0.0, 1.0) * static_cast<double>(f);
  int64_t at = std::min<int64_t>(static_cast<int64_t>(std::llround(target / static_cast<double>(u))) * u, f);
  if (std::fabs(static_cast<double>(f) - target) < std::fabs(static_cast<double>(at) - target)) at = f;
  RetrievalPrompt p = assemble(*instruction, filler, at, *sentence, *question);
  p.expected = digits;
  return p;
}

absl::StatusOr<RetrievalPrompt> needle_prompt(const Tokenizer& tokenizer,
                                              std::span<const int32_t> haystack, int64_t offset,
                                              int64_t length, double depth) {
  absl::StatusOr<std::vector<int32_t>> instruction = encode(tokenizer, kNeedleInstruction);
  absl::StatusOr<std::vector<int32_t>> sentence = encode(tokenizer, kNeedle);
  absl::StatusOr<std::vector<int32_t>> question = encode(tokenizer, kNeedleQuestion);
  for (const auto* s : {&instruction, &sentence, &question})
    if (!s->ok()) return s->status();
  ROTOR_ASSIGN_OR_RETURN(int64_t f, filler_tokens(
      "needle", length,
      static_cast<int64_t>(instruction->size() + sentence->size() + question->size())));
  if (offset < 0 || offset + f > static_cast<int64_t>(haystack.size())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the haystack holds ", haystack.size(), " tokens; a needle prompt of length ", length,
        " needs ", f, " of them from offset ", offset));
  }
  const std::vector<int32_t> filler(haystack.begin() + offset, haystack.begin() + offset + f);
  const int64_t at = std::clamp<int64_t>(
      std::llround(std::clamp(depth, 0.0, 1.0) * static_cast<double>(f)), 0, f);
  RetrievalPrompt p = assemble(*instruction, filler, at, *sentence, *question);
  p.expected = kNeedleAnswerWords;
  return p;
}

double score_passkey(const std::string& digits, const std::string& answer) {
  size_t i = 0;
  while (i < answer.size() && std::isspace(static_cast<unsigned char>(answer[i]))) ++i;
  return !digits.empty() && answer.compare(i, digits.size(), digits) == 0 ? 1.0 : 0.0;
}

double score_needle(const std::string& expected_words, const std::string& answer) {
  const std::vector<std::string> want = words_of(expected_words);
  if (want.empty()) return 0.0;
  const std::vector<std::string> got_list = words_of(answer);
  const std::set<std::string> got(got_list.begin(), got_list.end());
  int64_t found = 0;
  for (const std::string& w : want) found += got.count(w) > 0;
  return static_cast<double>(found) / static_cast<double>(want.size());
}

absl::StatusOr<Answerer> greedy_answerer(LlamaModel& model, int32_t stop_id) {
  const ParallelContext& par = model.options().parallel;
  if (par.tp_size() > 1 || par.cp_size() > 1) return recompute_answerer(model, stop_id);
  ROTOR_ASSIGN_OR_RETURN(Decoder made, Decoder::create(model));
  auto decoder = std::make_shared<Decoder>(std::move(made));
  return Answerer([decoder, stop_id](std::span<const int32_t> prompt, int64_t max_new) {
    const GreedyResult r = decoder->greedy(
        prompt, max_new, stop_id >= 0 ? std::optional<int32_t>(stop_id) : std::nullopt);
    Answer a;
    a.ids = r.tokens;
    for (double e : r.entropy) a.mean_entropy += e;
    if (!r.entropy.empty()) a.mean_entropy /= static_cast<double>(r.entropy.size());
    return a;
  });
}

namespace {

// The next-token log-probabilities [V] after `seq` and the mean attention
// entropy (over layers and heads) of its last row, from one forward pass of
// the whole sequence in the model's layout; the same on every rank.
std::pair<std::vector<double>, double> next_token(LlamaModel& model, std::span<const int32_t> seq) {
  const ParallelContext& par = model.options().parallel;
  const LlamaConfig& c = model.config();
  const int64_t n = static_cast<int64_t>(seq.size());
  // Padding: ring attention splits T into 2 * cp chunks, sequence
  // parallelism splits each shard's rows over tp.
  int64_t multiple = par.cp_size() > 1 ? 2 * par.cp_size() : 1;
  if (par.sequence_parallel) multiple *= par.tp_size();
  const int64_t t = (n + multiple - 1) / multiple * multiple;
  Batch b;
  b.input_ids = Tensor::zeros({1, t}, DType::kI32);
  b.targets = Tensor::empty({1, t}, DType::kI32);
  b.targets.fill(-1);
  b.positions = Tensor::zeros({1, t}, DType::kI32);
  for (int64_t i = 0; i < n; ++i) {
    b.input_ids.data<int32_t>()[i] = seq[static_cast<size_t>(i)];
    b.positions.data<int32_t>()[i] = static_cast<int32_t>(i);
  }
  if (t > n) {  // pads: their own segment at position 0, invisible to the real tokens
    b.segments = Tensor::zeros({1, t}, DType::kI32);
    for (int64_t i = n; i < t; ++i) b.segments.data<int32_t>()[i] = 1;
  }
  const Batch shard = shard_for_context(b, par);
  ForwardStats stats;
  stats.want_attention_entropy = true;
  model.evaluate(shard, stats);

  // The row of position n - 1 lives on one cp rank (every tp rank of it).
  const int64_t rows = shard.input_ids.dim(1);
  int64_t last = -1;
  for (int64_t i = 0; i < rows; ++i) {
    const bool real = !shard.segments.defined() || shard.segments.data<int32_t>()[i] == 0;
    if (real && shard.positions.data<int32_t>()[i] == n - 1) last = i;
  }
  // [log-probs (from tp rank 0 of the owner), entropy sum over this rank's heads]
  std::vector<double> out(static_cast<size_t>(c.vocab_size) + 1, 0.0);
  if (last >= 0) {
    const std::vector<double> lp = model.next_token_logprobs(last);
    if (par.tp_rank() == 0) std::copy(lp.begin(), lp.end(), out.begin());
    for (const Tensor& device_e : stats.attention_entropy) {  // [1, Hq / tp, rows]
      const Tensor e = device_e.to(Device::cpu());
      for (int64_t h = 0; h < e.dim(1); ++h) out.back() += e.item(h * rows + last);
    }
  }
  Tensor sum = Tensor::from_vector(out, {static_cast<int64_t>(out.size())}, DType::kF64);
  if (par.tp_size() > 1) par.tp->all_reduce(sum);
  if (par.cp_size() > 1) par.cp->all_reduce(sum);
  std::vector<double> lp = sum.to_vector();
  const double entropy = lp.back() / static_cast<double>(c.num_hidden_layers * c.num_attention_heads);
  lp.pop_back();
  return {std::move(lp), entropy};
}

}  // namespace

absl::StatusOr<Answerer> recompute_answerer(LlamaModel& model, int32_t stop_id) {
  LlamaModel* m = &model;
  return Answerer([m, stop_id](std::span<const int32_t> prompt, int64_t max_new) {
    std::vector<int32_t> seq(prompt.begin(), prompt.end());
    Answer a;
    for (int64_t i = 0; i < max_new && !seq.empty(); ++i) {
      auto [lp, entropy] = next_token(*m, seq);
      // argmax, ties to the lowest id (as Decoder::greedy)
      const int32_t next = static_cast<int32_t>(std::max_element(lp.begin(), lp.end()) - lp.begin());
      a.ids.push_back(next);
      a.mean_entropy += entropy;
      if (next == stop_id) break;
      seq.push_back(next);
    }
    if (!a.ids.empty()) a.mean_entropy /= static_cast<double>(a.ids.size());
    return a;
  });
}

absl::StatusOr<std::vector<RetrievalCell>> run_retrieval_grid(
    RetrievalKind kind, const Tokenizer& tokenizer, const Answerer& answer,
    const RetrievalOptions& options, std::span<const int32_t> haystack,
    const std::function<void(const RetrievalCell&)>& progress) {
  if (options.lengths.empty()) return absl::InvalidArgumentError("no lengths to evaluate");
  if (options.depths.empty()) return absl::InvalidArgumentError("no depths to evaluate");
  if (options.trials < 1) {
    return absl::InvalidArgumentError(absl::StrCat("trials must be >= 1, got ", options.trials));
  }
  for (int64_t l : options.lengths)
    if (l < 1) return absl::InvalidArgumentError(absl::StrCat("length must be >= 1, got ", l));
  for (double d : options.depths) {
    if (!(d >= 0 && d <= 1)) {
      return absl::InvalidArgumentError(absl::StrCat("depth must be in [0, 1], got ", d));
    }
  }
  // Answer lengths: the expected answer's tokens plus a little slack.
  const std::string answer_shape =
      kind == RetrievalKind::kPasskey ? " 12345." : " eat a sandwich and sit in Dolores Park on a sunny day.";
  ROTOR_ASSIGN_OR_RETURN(std::vector<int32_t> shape, encode(tokenizer, answer_shape));
  const int64_t max_new = static_cast<int64_t>(shape.size()) + 4;

  std::vector<RetrievalCell> cells;
  for (int64_t length : options.lengths) {
    for (size_t di = 0; di < options.depths.size(); ++di) {
      RetrievalCell cell{.length = length, .depth = options.depths[di], .trials = options.trials};
      double score_sum = 0, entropy_sum = 0;
      int64_t answer_tokens = 0;
      for (int64_t trial = 0; trial < options.trials; ++trial) {
        const uint64_t s = trial_seed(options.seed, length, di, trial);
        absl::StatusOr<RetrievalPrompt> prompt;
        if (kind == RetrievalKind::kPasskey) {
          prompt = passkey_prompt(tokenizer, length, cell.depth, 10000 + static_cast<int64_t>(s % 90000));
        } else {
          // The haystack window's offset: any that fits, from the seed.
          const int64_t h = static_cast<int64_t>(haystack.size());
          const int64_t room = std::max<int64_t>(h - length + 1, 1);
          prompt = needle_prompt(tokenizer, haystack, static_cast<int64_t>(s % static_cast<uint64_t>(room)),
                                 length, cell.depth);
        }
        if (!prompt.ok()) return prompt.status();
        const Answer a = answer(prompt->ids, max_new);
        const std::string text = answer_text(tokenizer, a.ids);
        const double score = kind == RetrievalKind::kPasskey ? score_passkey(prompt->expected, text)
                                                             : score_needle(prompt->expected, text);
        score_sum += score;
        cell.passed += kind == RetrievalKind::kPasskey ? score == 1.0 : score >= kNeedlePassScore;
        entropy_sum += a.mean_entropy * static_cast<double>(a.ids.size());
        answer_tokens += static_cast<int64_t>(a.ids.size());
      }
      cell.pass_rate = static_cast<double>(cell.passed) / static_cast<double>(cell.trials);
      cell.mean_score = score_sum / static_cast<double>(cell.trials);
      cell.mean_entropy = answer_tokens ? entropy_sum / static_cast<double>(answer_tokens) : 0.0;
      cells.push_back(cell);
      if (progress) progress(cell);
    }
  }
  return cells;
}

absl::StatusOr<std::vector<int32_t>> read_needle_haystack(const std::string& prefix,
                                                          std::span<const int64_t> lengths) {
  const int64_t longest = lengths.empty() ? 0 : *std::max_element(lengths.begin(), lengths.end());
  const int64_t want = 4 * longest;
  absl::StatusOr<IndexedDataset> ds = IndexedDataset::open(prefix);
  if (!ds.ok()) return absl::NotFoundError(absl::StrCat("needle haystack: ", ds.status().message()));
  std::vector<int32_t> out;
  for (int64_t i = 0; i < ds->num_sequences() && static_cast<int64_t>(out.size()) < want; ++i) {
    const int64_t n = std::min(ds->sequence_length(i), want - static_cast<int64_t>(out.size()));
    const size_t at = out.size();
    out.resize(at + static_cast<size_t>(n));
    if (absl::Status s = ds->read(i, 0, n, out.data() + at); !s.ok()) {
      return absl::DataLossError(absl::StrCat(prefix, ": ", s.message()));
    }
  }
  if (static_cast<int64_t>(out.size()) < longest) {
    return absl::InvalidArgumentError(absl::StrCat(prefix, ": holds ", out.size(),
                                                   " tokens, the needle haystack needs ", longest,
                                                   " (the longest --lengths)"));
  }
  return out;
}

absl::Status write_retrieval_csv(const std::string& path, const std::string& run, int64_t step,
                                 const std::vector<RetrievalCell>& cells) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path parent = fs::path(path).parent_path();
  if (!parent.empty()) fs::create_directories(parent, ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat(parent.string(), ": cannot create directory: ", ec.message()));
  }
  std::ostringstream text;
  text << kRetrievalCsvHeader << "\n";
  for (const RetrievalCell& c : cells) {
    text << absl::StrFormat("%s,%d,%d,%g,%d,%d,%.8g,%.8g\n", eval::csv_field(run), step, c.length, c.depth,
                            c.trials, c.passed, c.pass_rate, c.mean_entropy);
  }
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return absl::PermissionDeniedError(absl::StrCat(path, ": cannot open for writing"));
  out << text.str();
  out.close();
  if (!out) return absl::DataLossError(absl::StrCat(path, ": write failed"));
  return absl::OkStatus();
}

}  // namespace rotor
