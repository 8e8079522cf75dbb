// Ulysses x ring attention (USP, arXiv 2405.07719): the cp ranks form a 2-D
// grid of U-way all-to-all groups (`ulysses`, DeepSpeed-Ulysses, arXiv
// 2309.14509) by R = cp / U rings (`ring`, parallel/ring_attention.h).
//
// Layouts, on a rank holding Tl = T / cp tokens of each sequence (its zigzag
// shard, parallel/ring_attention.h) and, under tp, Hq / tp query heads:
//   local  [B, Tl, H, hd]          all of the rank's heads, its own tokens
//   group  [B, U Tl, H / U, hd]    the tokens of its whole ulysses group,
//                                  1/U of the heads (member j: heads
//                                  [j H/U, (j+1) H/U))
// One all-to-all over `ulysses` turns q, k, v from local into group layout
// (member j receives everyone's tokens for its heads); the group's tokens are
// one shard of an R-way ring, over which ring attention runs as with pure
// ring cp; a second all-to-all brings out (and lse, entropy: [B, H/U, U Tl]
// -> [B, H, Tl]) back. Backward sends q, k, v, out, dout and lse to the group
// layout again, runs the ring backward and returns dq, dk, dv.
//
// Token order in the group layout: a zigzag shard is two halves (an early
// and a late chunk), so the group's tokens are placed as member 0's first
// half, member 1's, ..., member U-1's, then the second halves from member
// U-1 down to member 0: with the grid's cp rank = ring rank * U + ulysses
// rank the group then holds 2U consecutive-position chunks in increasing
// order (half of them early, half late: the ring's load balance), so key
// positions stay sorted and the kernels' causal block skipping applies.
// Positions and segment ids travel the same way (any order is correct; the
// order only matters for speed). An odd Tl is placed member by member.
//
// GQA: member j needs the kv heads of its query heads. With Hkv divisible by
// U each member gets Hkv / U of them; with U divisible by Hkv (fewer kv heads
// than members) each member gets the one kv head its query heads read, so a
// kv head is replicated to U / Hkv members (LoongTrain's KV replication) and
// its gradient is the sum of what they send back. Hq must be divisible by U
// and U or Hkv by the other (the recipe checks, naming both numbers).
//
// Communication per rank and attention call (elements, forward): all-to-all
// of q, k, v and of out, each (U-1)/U of the local tensor, i.e. 4 N H hd / U
// per link for MHA as in the Ulysses paper; plus the ring's K/V hops of the
// group layout (R - 1 hops of 2 B U Tl (Hkv/U) hd) and the small LSE.
//
// With U = 1 these are ring attention; with R = 1 pure Ulysses.
#pragma once

#include "kernels/attention.h"
#include "kernels/tensor.h"
#include "parallel/communicator.h"

namespace rotor {

// out, lse (=) and, if defined, entropy [B, Hq, Tl] of the local queries, as
// ring_attention_forward over all cp ranks would give them. q [B, Tl, Hq, hd],
// k, v [B, Tl, Hkv, hd]; mask: the local positions (and segment ids).
void ulysses_attention_forward(Communicator& ulysses, Communicator& ring, const Tensor& q, const Tensor& k,
                               const Tensor& v, const AttentionMask& mask, double scale, const Tensor& out,
                               const Tensor& lse, const Tensor& entropy = Tensor());

// dq, dk, dv (=) of the local shard, given forward's out and lse.
void ulysses_attention_backward(Communicator& ulysses, Communicator& ring, const Tensor& q, const Tensor& k,
                                const Tensor& v, const AttentionMask& mask, double scale, const Tensor& out,
                                const Tensor& lse, const Tensor& dout, const Tensor& dq, const Tensor& dk,
                                const Tensor& dv);

// Heads [first, first + count) of a tensor that member j of a U-way group
// receives; ulysses_kv_slab: the kv heads (query heads: j Hq/U, Hq/U).
struct HeadSlab {
  int64_t first = 0, count = 0;
};
HeadSlab ulysses_kv_slab(int64_t hq, int64_t hkv, int u, int j);

}  // namespace rotor
