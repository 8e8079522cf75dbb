// Batches of packed samples (data/packing.h) for the model (model/llama.h):
// what training and the held-out evaluation feed the model.
#pragma once

#include <cstdint>

#include "data/packing.h"
#include "model/llama.h"

namespace rotor {

// A [rows, len] batch; segment ids only with document masking.
Batch empty_batch(int64_t rows, int64_t len, bool masking);

// Copies a packed sample into row `r` of `b` (its length must be b's).
void put_sample(const Batch& b, int64_t r, const PackedSample& s);

}  // namespace rotor
