// Position buckets for loss and attention statistics by position.
//
// Bucket 0 is [0, w), then the buckets double: [w, 2w), [2w, 4w), [4w, 8w), ...
// With w = 1024 these are the 0-1K, 1-2K, 2-4K, 4-8K, ... buckets in which long-
// context papers report where a model breaks; the demo's short sequences use a
// smaller first width. Positions are 0-based token positions in the window.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace rotor::eval {

struct PositionBucket {
  int64_t begin = 0;  // first position, inclusive
  int64_t end = 0;    // last position, exclusive
  std::string label;  // "0-1K", "1K-2K", "2K-4K" (K = 1024) or "0-64", "64-128"
};

// The buckets that cover positions [0, length); the last one is cut at length.
// first_width must be positive.
std::vector<PositionBucket> position_buckets(int64_t length, int64_t first_width = 1024);

// Index into position_buckets(...) of position p >= 0 for the same first_width.
int bucket_index(int64_t p, int64_t first_width = 1024);

}  // namespace rotor::eval
