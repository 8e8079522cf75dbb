#include "kernels/memory.h"

#include <algorithm>
#include <cstdio>
#include <mutex>

#include "kernels/check.h"

namespace rotor {

namespace {

// Ledger 0 counts the CPU, 1 the sim device, 2 + i cuda:i.
constexpr int kLedgers = 2 + 64;

struct Ledgers {
  std::mutex mu;
  std::array<MemoryUsage, kLedgers> usage;
};

// Process-wide, as the allocators the counts describe are (the CUDA caching
// allocator's statistics are per process too).
Ledgers& ledgers() {
  static Ledgers* l = new Ledgers();  // never destroyed: tensors may outlive static destruction
  return *l;
}

int ledger_of(Device d) {
  if (d.is_cpu()) return 0;
  if (d.is_sim()) return 1;
  ROTOR_CHECK(d.index >= 0 && d.index < kLedgers - 2) << "memory accounting: no ledger for " << d.str();
  return 2 + d.index;
}

thread_local MemoryTag g_current_tag = MemoryTag::kTransient;

void note_peak(MemoryUsage& u) {
  for (size_t i = 0; i < u.high.size(); ++i) u.high[i] = std::max(u.high[i], u.current[i]);
  const int64_t total = u.device_total();
  if (total > u.peak) {
    u.peak = total;
    u.at_peak = u.current;
  }
}

std::string megabytes(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MB", static_cast<double>(bytes) / 1e6);
  return buf;
}

}  // namespace

const char* memory_tag_name(MemoryTag tag) {
  switch (tag) {
    case MemoryTag::kTransient: return "transient";
    case MemoryTag::kParameters: return "parameters";
    case MemoryTag::kGradients: return "gradients";
    case MemoryTag::kOptimizer: return "optimizer";
    case MemoryTag::kActivations: return "activations";
    case MemoryTag::kOffloaded: return "offloaded";
  }
  return "?";
}

int64_t MemoryUsage::device_total() const {
  int64_t total = 0;
  for (int i = 0; i < kMemoryTags; ++i)
    if (i != static_cast<int>(MemoryTag::kOffloaded)) total += current[static_cast<size_t>(i)];
  return total;
}

std::string MemoryUsage::peak_summary() const {
  std::string s = "peak " + megabytes(peak) + ":";
  const char* sep = " ";
  for (MemoryTag t : {MemoryTag::kParameters, MemoryTag::kGradients, MemoryTag::kOptimizer, MemoryTag::kActivations,
                      MemoryTag::kTransient}) {
    s += sep;
    s += memory_tag_name(t);
    s += " " + megabytes(peak_of(t));
    sep = ", ";
  }
  return s;
}

MemoryUsage memory_usage(Device device) {
  Ledgers& l = ledgers();
  std::lock_guard<std::mutex> lock(l.mu);
  return l.usage[static_cast<size_t>(ledger_of(device))];
}

void reset_memory_peak(Device device) {
  Ledgers& l = ledgers();
  std::lock_guard<std::mutex> lock(l.mu);
  MemoryUsage& u = l.usage[static_cast<size_t>(ledger_of(device))];
  u.peak = u.device_total();
  u.at_peak = u.current;
  u.high = u.current;
}

MemoryTagScope::MemoryTagScope(MemoryTag tag) : previous_(g_current_tag) { g_current_tag = tag; }
MemoryTagScope::~MemoryTagScope() { g_current_tag = previous_; }
MemoryTag current_memory_tag() { return g_current_tag; }

void set_memory_tag(const Tensor& t, MemoryTag tag) {
  Storage* s = t.storage_.get();
  if (s == nullptr || s->ledger < 0 || s->tag == static_cast<uint8_t>(tag)) return;
  Ledgers& l = ledgers();
  std::lock_guard<std::mutex> lock(l.mu);
  MemoryUsage& u = l.usage[static_cast<size_t>(s->ledger)];
  const auto bytes = static_cast<int64_t>(s->bytes);
  u.current[s->tag] -= bytes;
  u.current[static_cast<size_t>(tag)] += bytes;
  s->tag = static_cast<uint8_t>(tag);
  note_peak(u);
}

MemoryTag memory_tag(const Tensor& t) {
  return t.storage_ ? static_cast<MemoryTag>(t.storage_->tag) : MemoryTag::kTransient;
}

namespace memory_internal {

int8_t account_allocation(Device device, int64_t bytes, MemoryTag tag) {
  const int ledger = ledger_of(device);
  Ledgers& l = ledgers();
  std::lock_guard<std::mutex> lock(l.mu);
  MemoryUsage& u = l.usage[static_cast<size_t>(ledger)];
  u.current[static_cast<size_t>(tag)] += bytes;
  note_peak(u);
  return static_cast<int8_t>(ledger);
}

void account_release(int8_t ledger, int64_t bytes, MemoryTag tag) {
  Ledgers& l = ledgers();
  std::lock_guard<std::mutex> lock(l.mu);
  l.usage[static_cast<size_t>(ledger)].current[static_cast<size_t>(tag)] -= bytes;
}

}  // namespace memory_internal
}  // namespace rotor
