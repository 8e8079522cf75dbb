// Counter-based random numbers: value i of stream `seed` depends only on
// (seed, i), never on how many numbers were drawn before or by which thread.
// So a parameter initialised from a seed is the same on one rank or split over
// many (a shard draws its own element indices), and tests are reproducible.
#pragma once

#include <cstdint>

#include "kernels/tensor.h"

namespace rotor {

// SplitMix64 finaliser: a bijective 64-bit mix with good avalanche.
inline uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// 64-bit FNV-1a of a string, to derive a stream from a parameter's name.
uint64_t hash_name(const char* name);

// Uniform in [0, 1) with 53 random bits.
inline double uniform01(uint64_t seed, uint64_t i) {
  return static_cast<double>(mix64(mix64(seed) ^ i) >> 11) * 0x1.0p-53;
}

// Standard normal via Box-Muller on two uniforms of the same counter.
double normal01(uint64_t seed, uint64_t i);

// Fills element j of `t` (float dtype; any device: a device tensor is drawn
// on the host and copied, so it holds the cpu values bit for bit) with lo + (hi - lo) * uniform01(seed, offset + j).
void fill_uniform(const Tensor& t, uint64_t seed, double lo, double hi, uint64_t offset = 0);
// Fills element j with mean + std * normal01(seed, offset + j).
void fill_normal(const Tensor& t, uint64_t seed, double mean, double std, uint64_t offset = 0);

}  // namespace rotor
