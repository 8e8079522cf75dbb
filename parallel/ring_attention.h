// Ring attention: causal attention over a sequence sharded across the ranks of
// the context-parallel (cp) communicator.
//
// Sharding (context_shard below): the sequence of T tokens is cut into 2*cp
// chunks of T / (2 cp); rank r holds chunks r and 2cp-1-r, in that order
// (zigzag). Under a causal mask chunk c attends to chunks 0..c, so every rank
// gets the same amount of work (one early and one late chunk). Each rank's
// tokens carry their *global* positions (and document segment ids), so RoPE,
// the entropy-aware logit scalar and document masking need nothing special.
//
// Forward, on rank r with local q, k, v ([B, Tl, H, hd], Tl = 2 T / (2 cp)):
//   blk = (k, v, k_pos, k_seg) of rank r
//   for s = 0 .. cp-1:
//     if s < cp-1: post send(blk -> rank r+1), recv(next <- rank r-1)
//     (out_s, lse_s) = attention(q, blk)            while the transfer runs
//     (out, lse)     = merge by log-sum-exp          (fp32, kernels/attention.h)
//     wait; blk = next                               (blk now from rank r-s-1)
// so after cp steps every query has seen every key block once. Traffic per
// rank: cp-1 sends of K and V (2 * B * Tl * Hkv * hd elements each), plus the
// i32 positions (and segment ids) of the block.
//
// Backward, given the final out and lse: the same ring, and each travelling
// block carries its gradient accumulators dk, dv. At step s rank r adds its
// queries' contribution to the block it holds (origin r-s); after the last
// step the accumulators of block r+1 are complete on rank r and make one more
// hop home. dq stays local. Traffic: cp-1 hops of K, V and cp hops of dK, dV.
//
// Overlap: every hop is posted (isend/irecv) and started (Communicator::flush)
// before the compute on the block held, and waited on after it: in the forward
// the next K/V block travels during attention_forward, in the backward during
// attention_backward. The dK/dV accumulators of a backward hop can only leave
// once that compute has added to them, so they are a separate, later hop.
//
// With cp = 1 both functions are the plain kernels with nothing sent.
#pragma once

#include <cstdint>

#include "kernels/attention.h"
#include "kernels/tensor.h"
#include "parallel/communicator.h"

namespace rotor {

// The message tags of a hop (a block's tensors travel as separate messages),
// for tests that follow the traffic.
namespace ring_tag {
enum : int { kK = 1, kV, kPos, kSeg, kDk, kDv };
}  // namespace ring_tag

// out, lse (=) for the local queries against the whole sequence's keys and,
// if defined, entropy [B, Hq, Tl] of each local query's attention row over the
// whole sequence (merged across the ring like lse).
// mask: local q_pos/k_pos (and q_seg/k_seg), [B, Tl] i32, k_* those of the
// local k/v; mask.causal as in attention_forward.
void ring_attention_forward(Communicator& cp, const Tensor& q, const Tensor& k, const Tensor& v,
                            const AttentionMask& mask, double scale, const Tensor& out,
                            const Tensor& lse, const Tensor& entropy = Tensor());

// dq, dk, dv (=) of the local shard, given forward's out and lse.
void ring_attention_backward(Communicator& cp, const Tensor& q, const Tensor& k, const Tensor& v,
                             const AttentionMask& mask, double scale, const Tensor& out,
                             const Tensor& lse, const Tensor& dout, const Tensor& dq,
                             const Tensor& dk, const Tensor& dv);

// The global token indices (0..T-1) that rank `rank` of `cp` holds, in local
// order: chunk r then chunk 2cp-1-r. T must be a multiple of 2 * cp.
std::vector<int64_t> context_shard_indices(int64_t seq, int cp, int rank);

// Rows [B, T, ...] -> this rank's [B, Tl, ...] (gathered along dim 1 by
// context_shard_indices). For input ids, targets, positions, segment ids.
Tensor context_shard(const Tensor& full, int cp, int rank);

}  // namespace rotor
