// Ring attention over the cp communicator. See ring_attention.h.
#include "parallel/ring_attention.h"

#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "kernels/check.h"
#include "kernels/elementwise.h"

namespace rotor {

namespace {

// The travelling key/value block and what goes with it.
struct KvBlock {
  Tensor k, v;     // [B, Tl, Hkv, hd]
  Tensor pos;      // [B, Tl] i32 global positions
  Tensor seg;      // [B, Tl] i32 segment ids, or undefined
  Tensor dk, dv;   // gradient accumulators (backward only)

  static KvBlock like(const KvBlock& o) {
    KvBlock b;
    b.k = Tensor::empty_like(o.k);
    b.v = Tensor::empty_like(o.v);
    b.pos = Tensor::empty_like(o.pos);
    if (o.seg.defined()) b.seg = Tensor::empty_like(o.seg);
    if (o.dk.defined()) b.dk = Tensor::empty_like(o.dk);
    if (o.dv.defined()) b.dv = Tensor::empty_like(o.dv);
    return b;
  }
};

// Posts the transfers of one ring hop: `cur` to rank+1, `next` from rank-1,
// and starts them (flush: a communicator that defers posted transfers, NCCL,
// issues them now, so that they run during the compute the caller queues next).
// `with_kv` false sends only the gradient accumulators (the final hop home).
std::vector<std::unique_ptr<CommRequest>> post_hop(Communicator& cp, const KvBlock& cur,
                                                   KvBlock& next, bool with_kv, bool with_grads) {
  const int n = cp.size(), r = cp.rank();
  const int to = (r + 1) % n, from = (r + n - 1) % n;
  std::vector<std::unique_ptr<CommRequest>> reqs;
  auto both = [&](const Tensor& send, Tensor& recv, int tag) {
    reqs.push_back(cp.irecv(recv, from, tag));
    reqs.push_back(cp.isend(send, to, tag));
  };
  if (with_kv) {
    both(cur.k, next.k, ring_tag::kK);
    both(cur.v, next.v, ring_tag::kV);
    both(cur.pos, next.pos, ring_tag::kPos);
    if (cur.seg.defined()) both(cur.seg, next.seg, ring_tag::kSeg);
  }
  if (with_grads) {
    both(cur.dk, next.dk, ring_tag::kDk);
    both(cur.dv, next.dv, ring_tag::kDv);
  }
  cp.flush();
  return reqs;
}

void wait_all(std::vector<std::unique_ptr<CommRequest>>& reqs) {
  for (auto& r : reqs) r->wait();
  reqs.clear();
}

// The received block becomes current and the old current's buffers receive
// the next one; after the first hop the old current is the caller's k/v (only
// ever sent from), so fresh buffers replace it.
void advance(KvBlock& cur, KvBlock& next, bool first_hop) {
  std::swap(cur, next);
  if (first_hop) next = KvBlock::like(cur);
}

AttentionMask block_mask(const AttentionMask& local, const KvBlock& blk) {
  AttentionMask m = local;
  m.k_pos = blk.pos;
  m.k_seg = blk.seg;
  return m;
}

}  // namespace

void ring_attention_forward(Communicator& cp, const Tensor& q, const Tensor& k, const Tensor& v,
                            const AttentionMask& mask, double scale, const Tensor& out,
                            const Tensor& lse, const Tensor& entropy) {
  const int n = cp.size();
  if (n == 1) {
    attention_forward(q, k, v, mask, scale, out, lse, entropy);
    return;
  }
  ROTOR_CHECK(mask.q_seg.defined() == mask.k_seg.defined())
      << "ring attention: q_seg and k_seg must both be given or both absent";
  KvBlock cur{k, v, mask.k_pos, mask.k_seg, Tensor(), Tensor()};
  KvBlock next = KvBlock::like(cur);
  // Accumulator starts as the identity of the merge: out 0, lse -inf.
  out.zero();
  lse.fill(-std::numeric_limits<double>::infinity());
  const Tensor part_out = Tensor::empty_like(out);
  const Tensor part_lse = Tensor::empty_like(lse);
  Tensor part_entropy;
  if (entropy.defined()) {
    entropy.zero();
    part_entropy = Tensor::empty_like(entropy);
  }
  for (int s = 0; s < n; ++s) {
    std::vector<std::unique_ptr<CommRequest>> reqs;
    if (s + 1 < n) reqs = post_hop(cp, cur, next, /*with_kv=*/true, /*with_grads=*/false);
    attention_forward(q, cur.k, cur.v, block_mask(mask, cur), scale, part_out, part_lse,
                      part_entropy);
    attention_merge(out, lse, entropy, part_out, part_lse, part_entropy);
    if (s + 1 < n) {
      wait_all(reqs);
      advance(cur, next, s == 0);
    }
  }
}

void ring_attention_backward(Communicator& cp, const Tensor& q, const Tensor& k, const Tensor& v,
                             const AttentionMask& mask, double scale, const Tensor& out,
                             const Tensor& lse, const Tensor& dout, const Tensor& dq,
                             const Tensor& dk, const Tensor& dv) {
  const int n = cp.size();
  dq.zero();
  if (n == 1) {
    dk.zero();
    dv.zero();
    attention_backward(q, k, v, mask, scale, out, lse, dout, dq, dk, dv);
    return;
  }
  KvBlock cur{k, v, mask.k_pos, mask.k_seg, Tensor::zeros_like(dk),
              Tensor::zeros_like(dv)};
  KvBlock next = KvBlock::like(cur);
  for (int s = 0; s < n; ++s) {
    // K and V (unchanged by this step), with their positions and segment ids,
    // are posted and started before the gradients of the block are computed,
    // so they travel during that compute; the accumulators follow once this
    // rank has added its queries' share (they cannot leave earlier).
    // After the last step only the accumulators travel: home, to rank + 1.
    std::vector<std::unique_ptr<CommRequest>> kv;
    if (s + 1 < n) kv = post_hop(cp, cur, next, /*with_kv=*/true, /*with_grads=*/false);
    attention_backward(q, cur.k, cur.v, block_mask(mask, cur), scale, out, lse, dout, dq, cur.dk,
                       cur.dv);
    std::vector<std::unique_ptr<CommRequest>> grads =
        post_hop(cp, cur, next, /*with_kv=*/false, /*with_grads=*/true);
    wait_all(kv);
    wait_all(grads);
    advance(cur, next, s == 0);
  }
  // After n hops the accumulators in `cur` are those of this rank's own block.
  dk.copy_from(cur.dk);
  dv.copy_from(cur.dv);
}

std::vector<int64_t> context_shard_indices(int64_t seq, int cp, int rank) {
  ROTOR_CHECK(cp >= 1 && rank >= 0 && rank < cp) << "context shard: rank " << rank << " of " << cp;
  ROTOR_CHECK(seq % (2 * cp) == 0) << "context shard: sequence length " << seq
                                    << " is not a multiple of 2 * cp = " << 2 * cp;
  const int64_t chunk = seq / (2 * cp);
  std::vector<int64_t> idx;
  idx.reserve(static_cast<size_t>(2 * chunk));
  for (int64_t c : {static_cast<int64_t>(rank), static_cast<int64_t>(2 * cp - 1 - rank)})
    for (int64_t t = 0; t < chunk; ++t) idx.push_back(c * chunk + t);
  return idx;
}

Tensor context_shard(const Tensor& full, int cp, int rank) {
  ROTOR_CHECK(full.ndim() >= 2) << "context shard: expected [B, T, ...], got " << full.str();
  const int64_t b = full.dim(0), t = full.dim(1);
  const std::vector<int64_t> idx = context_shard_indices(t, cp, rank);
  const int64_t n = static_cast<int64_t>(idx.size()), per_token = full.numel() / (b * t);
  std::vector<int64_t> dims = full.shape().vec();
  dims[1] = n;
  Tensor out = Tensor::empty(Shape(dims), full.dtype(), full.device());
  // Token rows [B * T, per_token]; the shard is 2 runs of consecutive tokens
  // per sequence, each one copy (on the tensors' device).
  const Tensor src = full.view({b * t, per_token}), dst = out.view({b * n, per_token});
  for (int64_t i = 0; i < b; ++i) {
    for (int64_t j = 0; j < n;) {
      int64_t len = 1;
      while (j + len < n && idx[j + len] == idx[j] + len) ++len;
      dst.narrow(i * n + j, len).copy_from(src.narrow(i * t + idx[j], len));
      j += len;
    }
  }
  return out;
}

}  // namespace rotor
