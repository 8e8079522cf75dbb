#include "eval/buckets.h"

#include <algorithm>

#include "kernels/check.h"

namespace rotor::eval {
namespace {

// 1024 -> "1K", 1536 -> "1536", 65536 -> "64K".
std::string short_count(int64_t n) {
  if (n > 0 && n % 1024 == 0) return std::to_string(n / 1024) + "K";
  return std::to_string(n);
}

}  // namespace

std::vector<PositionBucket> position_buckets(int64_t length, int64_t first_width) {
  ROTOR_CHECK_GT(first_width, 0) << "position_buckets: first width";
  std::vector<PositionBucket> out;
  int64_t begin = 0, end = first_width;
  while (begin < length) {
    PositionBucket b;
    b.begin = begin;
    b.end = std::min(end, length);
    b.label = short_count(begin) + "-" + short_count(end);  // the nominal bucket
    out.push_back(b);
    begin = end;
    end *= 2;
  }
  return out;
}

int bucket_index(int64_t p, int64_t first_width) {
  ROTOR_CHECK_GE(p, 0) << "bucket_index: position";
  ROTOR_CHECK_GT(first_width, 0) << "bucket_index: first width";
  int i = 0;
  for (int64_t end = first_width; p >= end; end *= 2) ++i;
  return i;
}

}  // namespace rotor::eval
