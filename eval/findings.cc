// The seed papers' findings on eval CSVs. See findings.h.
#include "eval/findings.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace rotor::eval {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::string label(int64_t n) {
  if (n >= 1024 && n % 1024 == 0) return absl::StrCat(n / 1024, "K");
  return absl::StrCat(n);
}

// The runs findings reason about.
struct Cast {
  const RunInfo* base = nullptr;
  std::vector<const RunInfo*> extensions;  // continued at Lx
  std::vector<const RunInfo*> continued;   // every continued run
  int64_t lx = 0;
  std::string problem;  // why there is no cast ("" when there is)
};

Cast cast_of(const std::vector<RunInfo>& runs) {
  Cast c;
  std::map<int64_t, int> at_length;
  for (const RunInfo& r : runs) {
    if (!r.continued) {
      if (c.base != nullptr) c.problem = absl::StrCat("two runs not continued from a checkpoint (", c.base->name, ", ", r.name, "): which is the base?");
      c.base = &r;
    } else {
      c.continued.push_back(&r);
      ++at_length[r.train_length];
    }
  }
  if (c.base == nullptr && c.problem.empty()) c.problem = "no base run (every run is continued from a checkpoint)";
  if (c.continued.empty() && c.problem.empty()) c.problem = "no continued (extension) runs";
  int most = 0;
  for (const auto& [length, n] : at_length)
    if (n >= most) {
      most = n;
      c.lx = length;
    }
  for (const RunInfo* r : c.continued)
    if (r->train_length == c.lx) c.extensions.push_back(r);
  return c;
}

const RunSummary* summary(const EvalTables& t, const std::string& name) {
  for (const RunSummary& s : t.runs)
    if (s.name == name) return &s;
  return nullptr;
}

double ppl_at(const EvalTables& t, const std::string& name, int64_t length) {
  const RunSummary* s = summary(t, name);
  if (s == nullptr) return kNaN;
  auto it = s->ppl.find(length);
  return it == s->ppl.end() ? kNaN : it->second;
}

std::string num(double v, const char* format = "%.3f") {
  if (std::isnan(v)) return "-";
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

Finding claim(int number, const std::string& text) {
  Finding f;
  f.number = number;
  f.claim = text;
  return f;
}

Finding missing(Finding f, const std::string& why) {
  f.verdict = Verdict::kNotMeasured;
  f.summary = why;
  f.evidence = absl::StrCat("Not measured: ", why, ".\n");
  return f;
}

Finding finding1(const EvalTables& t, const Cast& c) {
  Finding f = claim(1, "The base model's perplexity breaks past its training length; every extension "
                                  "method holds to the extended length");
  if (!c.problem.empty()) return missing(f, c.problem);
  const int64_t lb = c.base->train_length, lx = c.lx;
  const double b1 = ppl_at(t, c.base->name, lb), bx = ppl_at(t, c.base->name, lx);
  if (std::isnan(b1) || std::isnan(bx))
    return missing(f, absl::StrCat("no ppl of the base run at ", label(lb), " and ", label(lx)));
  // The base's worst length past its training length.
  int64_t worst = lx;
  for (const auto& [length, p] : summary(t, c.base->name)->ppl)
    if (length > lb && p > ppl_at(t, c.base->name, worst)) worst = length;
  const double bw = ppl_at(t, c.base->name, worst);
  const bool breaks = bw >= 1.1 * b1;
  std::ostringstream e;
  e << "| run | train length | ppl@" << label(lb) << " | ppl@" << label(lx) << " | ratio | verdict |\n|---|---:|---:|---:|---:|---|\n";
  e << "| " << c.base->name << " (base) | " << lb << " | " << num(b1) << " | " << num(bx) << " | " << num(bx / b1, "%.2f")
    << " | " << (breaks ? "breaks" : "does not break") << absl::StrFormat(" (ppl@%s %.3f, x%.2f)", label(worst), bw, bw / b1)
    << " |\n";
  bool all_hold = true;
  int holding = 0;
  for (const RunInfo* r : c.extensions) {
    const double p1 = ppl_at(t, r->name, lb), px = ppl_at(t, r->name, lx);
    if (std::isnan(p1) || std::isnan(px)) return missing(f, absl::StrCat("no ppl of ", r->name, " at ", label(lb), " and ", label(lx)));
    const bool holds = px <= 1.05 * p1 && px < bx;
    all_hold = all_hold && holds;
    holding += holds;
    e << "| " << r->name << " | " << r->train_length << " | " << num(p1) << " | " << num(px) << " | " << num(px / p1, "%.2f")
      << " | " << (holds ? "holds" : "does not hold") << " |\n";
  }
  e << "\nRule: the base breaks when its largest ppl past " << label(lb) << " is >= 1.1 x its ppl@" << label(lb)
    << "; an extension run holds when its ppl@" << label(lx) << " <= 1.05 x its ppl@" << label(lb)
    << " and is below the base's ppl@" << label(lx) << ".\n";
  f.verdict = breaks && all_hold ? Verdict::kReproduced : Verdict::kNotReproduced;
  f.summary = absl::StrFormat("base ppl %s at %s, %s at %s (x%.2f); %d of %d extension runs hold to %s", num(b1), label(lb),
                              num(bw), label(worst), bw / b1, holding, c.extensions.size(), label(lx));
  f.evidence = e.str();
  return f;
}

Finding finding2(const EvalTables& t, const Cast& c) {
  Finding f = claim(2, "Keeping the pretrained attention pattern helps: the extension with the largest "
                                  "attention JS divergence from the base extrapolates worst");
  if (!c.problem.empty()) return missing(f, c.problem);
  if (c.extensions.size() < 2) return missing(f, "fewer than two extension runs");
  // The longest length every extension run has a ppl at.
  std::optional<int64_t> longest;
  for (const RunSummary& s : t.runs)
    for (const auto& [length, p] : s.ppl) {
      bool everyone = true;
      for (const RunInfo* r : c.extensions) everyone = everyone && !std::isnan(ppl_at(t, r->name, length));
      if (everyone && (!longest || length > *longest)) longest = length;
    }
  if (!longest) return missing(f, "no length at which every extension run has a ppl");
  std::ostringstream e;
  e << "| run | JS vs base | ppl@" << label(*longest) << " |\n|---|---:|---:|\n";
  const RunInfo *most_js = nullptr, *worst = nullptr;
  double top_js = -1, top_ppl = -1;
  for (const RunInfo* r : c.extensions) {
    const RunSummary* s = summary(t, r->name);
    if (s == nullptr || !s->js) return missing(f, absl::StrCat("no JS divergence of ", r->name, " (rotor eval attention --reference)"));
    const double p = ppl_at(t, r->name, *longest);
    e << "| " << r->name << " | " << num(s->js->value, "%.4f") << " (@" << label(s->js->length) << ") | " << num(p) << " |\n";
    if (s->js->value > top_js) top_js = s->js->value, most_js = r;
    if (p > top_ppl) top_ppl = p, worst = r;
  }
  e << "\nRule: reproduced when the run with the largest JS divergence has the largest ppl@" << label(*longest) << ".\n";
  f.verdict = most_js == worst ? Verdict::kReproduced : Verdict::kNotReproduced;
  f.summary = absl::StrFormat("largest JS: %s (%.4f); worst ppl@%s: %s (%.3f)", most_js->name, top_js, label(*longest),
                              worst->name, top_ppl);
  f.evidence = e.str();
  return f;
}

// A retrieval cell of passkey.csv, needle.csv (per length and depth) or
// ruler.csv (per task and length).
struct Cell {
  std::string run, key;  // key: "passkey 512 0.5", "ruler vt 1024"
  double entropy = kNaN, rate = kNaN;
};

std::vector<Cell> retrieval_cells(const EvalTables& t, bool with_ruler) {
  std::vector<Cell> cells;
  for (const char* file : {"passkey.csv", "needle.csv", "ruler.csv"}) {
    if (std::string(file) == "ruler.csv" && !with_ruler) continue;
    const CsvKind& kind = *csv_kind(file);
    for (const CsvRow& r : latest_rows(kind, t.merged.at(file))) {
      Cell c{.run = r[0], .key = "", .entropy = number_at(kind, r, "mean_entropy"), .rate = number_at(kind, r, "pass_rate")};
      c.key = std::string(file) == "ruler.csv"
                  ? absl::StrCat("ruler ", text_at(kind, r, "task"), " ", text_at(kind, r, "length"))
                  : absl::StrCat(file, " ", text_at(kind, r, "length"), " ", text_at(kind, r, "depth"));
      if (!std::isnan(c.rate)) cells.push_back(c);
    }
  }
  return cells;
}

Finding finding3(const EvalTables& t) {
  Finding f = claim(3, "Large attention uncertainty goes with retrieval errors: across (run, length, depth) "
                                  "cells, higher attention entropy goes with lower pass rates");
  std::vector<double> entropy, rate;
  std::map<std::string, std::vector<const Cell*>> by_run;
  const std::vector<Cell> cells = retrieval_cells(t, false);
  for (const Cell& c : cells) {
    if (std::isnan(c.entropy)) continue;
    entropy.push_back(c.entropy);
    rate.push_back(c.rate);
    by_run[c.run].push_back(&c);
  }
  if (entropy.size() < 3) return missing(f, "fewer than 3 passkey/needle cells");
  const double rho = spearman(entropy, rate);
  if (std::isnan(rho)) return missing(f, absl::StrCat("the pass rate is the same in all ", rate.size(), " cells (",
                                                      num(rate[0], "%.2f"), "): nothing to correlate"));
  const double n = static_cast<double>(entropy.size());
  const double z = rho * std::sqrt(n - 1);
  const double p = 0.5 * std::erfc(-z / std::sqrt(2.0));  // one-sided, H1: rho < 0
  std::ostringstream e;
  e << "| run | cells | mean entropy | mean pass rate |\n|---|---:|---:|---:|\n";
  for (const auto& [run, mine] : by_run) {
    double se = 0, sr = 0;
    for (const Cell* c : mine) se += c->entropy, sr += c->rate;
    e << "| " << run << " | " << mine.size() << " | " << num(se / mine.size(), "%.4f") << " | " << num(sr / mine.size()) << " |\n";
  }
  e << absl::StrFormat("\nSpearman rho(entropy, pass rate) = %.3f over %d cells; z = rho sqrt(n-1) = %.2f, one-sided p = %.3g.\n"
                       "Rule: reproduced when rho < 0 with p < 0.05.\n", rho, entropy.size(), z, p);
  f.verdict = rho < 0 && p < 0.05 ? Verdict::kReproduced : Verdict::kNotReproduced;
  f.summary = absl::StrFormat("Spearman rho = %.3f over %d cells (one-sided p = %.3g)", rho, entropy.size(), p);
  f.evidence = e.str();
  return f;
}

// The mean score of `run` over the cells of `keys`.
double mean_rate(const std::vector<Cell>& cells, const std::string& run, const std::set<std::string>& keys) {
  double sum = 0;
  int n = 0;
  for (const Cell& c : cells)
    if (c.run == run && keys.count(c.key)) sum += c.rate, ++n;
  return n ? sum / n : kNaN;
}

Finding finding4(const EvalTables& t, const Cast& c) {
  Finding f = claim(4, "A longer continual-pretraining length lowers attention entropy and raises retrieval");
  if (!c.problem.empty()) return missing(f, c.problem);
  std::map<std::pair<std::string, std::string>, std::vector<const RunInfo*>> by_method;
  for (const RunInfo* r : c.continued) by_method[{r->rope, r->logit_scale}].push_back(r);
  const std::vector<Cell> cells = retrieval_cells(t, true);
  std::ostringstream e;
  e << "| run | train length | attention entropy | mean retrieval score | cells |\n|---|---:|---:|---:|---:|\n";
  int pairs = 0, agreeing = 0;
  std::string said;
  for (auto& [method, runs] : by_method) {
    std::sort(runs.begin(), runs.end(), [](auto* a, auto* b) { return a->train_length < b->train_length; });
    const RunInfo *shorter = runs.front(), *longer = runs.back();
    if (shorter->train_length == longer->train_length) continue;
    const RunSummary *ss = summary(t, shorter->name), *ls = summary(t, longer->name);
    if (ss == nullptr || ls == nullptr || !ss->entropy || !ls->entropy || ss->entropy->length != ls->entropy->length)
      return missing(f, absl::StrCat("no attention entropy of ", shorter->name, " and ", longer->name, " at one length"));
    std::set<std::string> mine, theirs, common;
    for (const Cell& cell : cells) (cell.run == shorter->name ? mine : theirs).insert(cell.key);
    for (const std::string& k : mine)
      if (theirs.count(k) && !k.empty()) common.insert(k);
    if (common.empty()) return missing(f, absl::StrCat("no retrieval cells common to ", shorter->name, " and ", longer->name));
    const double rs = mean_rate(cells, shorter->name, common), rl = mean_rate(cells, longer->name, common);
    for (const RunInfo* r : {shorter, longer}) {
      const RunSummary* s = r == shorter ? ss : ls;
      e << "| " << r->name << " | " << r->train_length << " | " << num(s->entropy->value, "%.4f") << " (@"
        << label(s->entropy->length) << ") | " << num(r == shorter ? rs : rl) << " | " << common.size() << " |\n";
    }
    ++pairs;
    const bool agrees = ls->entropy->value < ss->entropy->value && rl > rs;
    agreeing += agrees;
    absl::StrAppend(&said, said.empty() ? "" : "; ", absl::StrFormat("%s -> %s: entropy %.4f -> %.4f, retrieval %.3f -> %.3f",
                                                                           label(shorter->train_length), label(longer->train_length),
                                                                           ss->entropy->value, ls->entropy->value, rs, rl));
  }
  if (pairs == 0) return missing(f, "no method continued at two lengths (the length ablation)");
  e << "\nRule: reproduced when, for every method trained at two lengths, the longer run has the lower attention "
       "entropy and the higher mean score over the passkey, needle and RULER cells both runs have.\n";
  f.verdict = agreeing == pairs ? Verdict::kReproduced : Verdict::kNotReproduced;
  f.summary = said;
  f.evidence = e.str();
  return f;
}

Finding finding5(const EvalTables& t, const Cast& c) {
  Finding f = claim(5, "Entropy-aware ABF extrapolates best at 2x its training length");
  if (!c.problem.empty()) return missing(f, c.problem);
  const RunInfo* eabf = nullptr;
  int scaled = 0;
  for (const RunInfo* r : c.extensions)
    if (r->logit_scale != "none") eabf = r, ++scaled;
  if (scaled != 1) return missing(f, absl::StrCat(scaled, " extension runs with an attention-logit scale (entropy-aware ABF): one is needed"));
  const int64_t l2 = 2 * c.lx;
  std::ostringstream e;
  e << "| run | ppl@" << label(l2) << " |\n|---|---:|\n";
  const RunInfo* best = nullptr;
  double best_ppl = 0;
  for (const RunInfo* r : c.extensions) {
    const double p = ppl_at(t, r->name, l2);
    if (std::isnan(p)) return missing(f, absl::StrCat("no ppl of ", r->name, " at ", label(l2)));
    e << "| " << r->name << " | " << num(p) << " |\n";
    if (best == nullptr || p < best_ppl || (p == best_ppl && r == eabf)) best = r, best_ppl = p;
  }
  e << "\nRule: reproduced when " << eabf->name << " (the run with the logit scale) has the lowest ppl@" << label(l2) << ".\n";
  f.verdict = best == eabf ? Verdict::kReproduced : Verdict::kNotReproduced;
  f.summary = absl::StrFormat("lowest ppl@%s: %s (%.3f); %s: %.3f", label(l2), best->name, best_ppl, eabf->name,
                              ppl_at(t, eabf->name, l2));
  f.evidence = e.str();
  return f;
}

std::vector<double> ranks(const std::vector<double>& v) {
  std::vector<size_t> order(v.size());
  for (size_t i = 0; i < v.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return v[a] < v[b]; });
  std::vector<double> r(v.size());
  for (size_t i = 0; i < order.size();) {
    size_t j = i;
    while (j + 1 < order.size() && v[order[j + 1]] == v[order[i]]) ++j;
    for (size_t k = i; k <= j; ++k) r[order[k]] = (static_cast<double>(i + j) / 2) + 1;
    i = j + 1;
  }
  return r;
}

}  // namespace

const char* verdict_name(Verdict v) {
  switch (v) {
    case Verdict::kReproduced: return "reproduced";
    case Verdict::kNotReproduced: return "not reproduced";
    default: return "not measured";
  }
}

double spearman(const std::vector<double>& x, const std::vector<double>& y) {
  if (x.size() != y.size() || x.size() < 3) return kNaN;
  const std::vector<double> rx = ranks(x), ry = ranks(y);
  const double n = static_cast<double>(x.size()), mean = (n + 1) / 2;
  double sxy = 0, sxx = 0, syy = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    sxy += (rx[i] - mean) * (ry[i] - mean);
    sxx += (rx[i] - mean) * (rx[i] - mean);
    syy += (ry[i] - mean) * (ry[i] - mean);
  }
  if (sxx == 0 || syy == 0) return kNaN;
  return sxy / std::sqrt(sxx * syy);
}

std::vector<Finding> assess_findings(const EvalTables& tables, const std::vector<RunInfo>& runs) {
  const Cast c = cast_of(runs);
  return {finding1(tables, c), finding2(tables, c), finding3(tables), finding4(tables, c), finding5(tables, c)};
}

std::string findings_markdown(const std::vector<Finding>& findings) {
  std::ostringstream md;
  md << "# Findings\n\nThe seed papers' findings, checked on these runs' evaluations (rules: eval/findings.h).\n\n"
     << "| # | finding | verdict | numbers |\n|---|---|---|---|\n";
  for (const Finding& f : findings)
    md << "| " << f.number << " | " << f.claim << " | **" << verdict_name(f.verdict) << "** | " << f.summary << " |\n";
  for (const Finding& f : findings)
    md << "\n## " << f.number << ". " << f.claim << "\n\n**" << verdict_name(f.verdict) << "**: " << f.summary << "\n\n"
       << f.evidence;
  return md.str();
}

std::string findings_table(const std::vector<Finding>& findings) {
  std::ostringstream out;
  for (const Finding& f : findings)
    out << f.number << ". " << absl::StrFormat("%-15s", verdict_name(f.verdict)) << " " << f.claim << "\n   " << f.summary << "\n";
  return out.str();
}

}  // namespace rotor::eval
