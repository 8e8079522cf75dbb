#include "parallel/ulysses_attention.h"

#include <functional>

#include "kernels/check.h"
#include "kernels/elementwise.h"
#include "parallel/ring_attention.h"

namespace rotor {

HeadSlab ulysses_kv_slab(int64_t hq, int64_t hkv, int u, int j) {
  if (hkv % u == 0) return {j * (hkv / u), hkv / u};
  const int64_t group = hq / hkv;          // query heads per kv head
  return {j * (hq / u) / group, 1};        // U divisible by Hkv: one kv head per member
}

namespace {

using SlabOf = std::function<HeadSlab(int j)>;

// Where member i's tokens go in the group layout (see the header): with an
// even Tl, its first half at slot i and its second half at slot 2U-1-i, each
// slot Tl/2 tokens; with an odd Tl, all of them at slot i.
struct TokenOrder {
  int u;
  int64_t tl;
  bool halves() const { return tl % 2 == 0; }
  int pieces() const { return halves() ? 2 : 1; }
  int64_t len() const { return halves() ? tl / 2 : tl; }
  int64_t group_start(int i, int h) const { return (h == 0 ? i : 2 * u - 1 - i) * len(); }
};

// [B, Tl, H, hd] -> [B, U Tl, c, hd]: member j receives heads slab_of(j) of
// every member's tokens.
Tensor to_group(Communicator& ul, const Tensor& x, const SlabOf& slab_of, const TokenOrder& o) {
  const int u = ul.size();
  const int64_t b = x.dim(0), tl = x.dim(1), h = x.dim(2), hd = x.dim(3), c = slab_of(0).count;
  const Tensor x2 = x.view({b * tl, h * hd});
  Tensor send = Tensor::empty({u * b * tl, c * hd}, x.dtype(), x.device());
  for (int j = 0; j < u; ++j) copy_columns(x2, slab_of(j).first * hd, send.narrow(j * b * tl, b * tl), 0, c * hd);
  Tensor recv = Tensor::empty_like(send);
  ul.all_to_all(send, recv);  // block i: member i's tokens [B, Tl, c hd]
  Tensor g = Tensor::empty({b, u * tl, c, hd}, x.dtype(), x.device());
  const Tensor g3 = g.view({b, u * tl, c * hd}), r3 = recv.view({u * b, tl, c * hd});
  for (int i = 0; i < u; ++i)
    for (int64_t bi = 0; bi < b; ++bi)
      for (int p = 0; p < o.pieces(); ++p)
        g3.select(bi).narrow(o.group_start(i, p), o.len()).copy_from(r3.select(i * b + bi).narrow(p * o.len(), o.len()));
  return g;
}

// The inverse: [B, U Tl, c, hd] -> x [B, Tl, H, hd]. With `accumulate` (kv
// heads replicated to several members) x is zeroed and every member's slab
// is added to it.
void from_group(Communicator& ul, const Tensor& g, const SlabOf& slab_of, const TokenOrder& o, const Tensor& x,
                bool accumulate) {
  const int u = ul.size();
  const int64_t b = x.dim(0), tl = x.dim(1), h = x.dim(2), hd = x.dim(3), c = slab_of(0).count;
  Tensor send = Tensor::empty({u * b * tl, c * hd}, g.dtype(), g.device());
  const Tensor g3 = g.view({b, u * tl, c * hd}), s3 = send.view({u * b, tl, c * hd});
  for (int i = 0; i < u; ++i)
    for (int64_t bi = 0; bi < b; ++bi)
      for (int p = 0; p < o.pieces(); ++p)
        s3.select(i * b + bi).narrow(p * o.len(), o.len()).copy_from(g3.select(bi).narrow(o.group_start(i, p), o.len()));
  Tensor recv = Tensor::empty_like(send);
  ul.all_to_all(send, recv);  // block j: this rank's tokens, heads slab_of(j)
  const Tensor x2 = x.view({b * tl, h * hd});
  if (!accumulate) {
    for (int j = 0; j < u; ++j) copy_columns(recv.narrow(j * b * tl, b * tl), 0, x2, slab_of(j).first * hd, c * hd);
    return;
  }
  x.zero();
  Tensor part = Tensor::empty({b * tl, c * hd}, x.dtype(), x.device());
  for (int j = 0; j < u; ++j) {
    copy_columns(x2, slab_of(j).first * hd, part, 0, c * hd);
    add(part, recv.narrow(j * b * tl, b * tl), part);
    copy_columns(part, 0, x2, slab_of(j).first * hd, c * hd);
  }
}

// Per-head statistics: s [B, H, Tl] -> [B, c, U Tl].
Tensor stat_to_group(Communicator& ul, const Tensor& s, const SlabOf& slab_of, const TokenOrder& o) {
  const int u = ul.size();
  const int64_t b = s.dim(0), tl = s.dim(2), c = slab_of(0).count;
  Tensor send = Tensor::empty({u * b * c, tl}, s.dtype(), s.device());
  const Tensor s4 = send.view({u * b, c, tl});
  for (int j = 0; j < u; ++j)
    for (int64_t bi = 0; bi < b; ++bi) s4.select(j * b + bi).copy_from(s.select(bi).narrow(slab_of(j).first, c));
  Tensor recv = Tensor::empty_like(send);
  ul.all_to_all(send, recv);  // block i: member i's tokens [B, c, Tl]
  Tensor g = Tensor::empty({b, c, u * tl}, s.dtype(), s.device());
  const Tensor g2 = g.view({b * c, u * tl});
  for (int i = 0; i < u; ++i)
    for (int p = 0; p < o.pieces(); ++p)
      copy_columns(recv.narrow(i * b * c, b * c), p * o.len(), g2, o.group_start(i, p), o.len());
  return g;
}

// The inverse: [B, c, U Tl] -> s [B, H, Tl].
void stat_from_group(Communicator& ul, const Tensor& g, const SlabOf& slab_of, const TokenOrder& o, const Tensor& s) {
  const int u = ul.size();
  const int64_t b = s.dim(0), tl = s.dim(2), c = slab_of(0).count;
  Tensor send = Tensor::empty({u * b * c, tl}, g.dtype(), g.device());
  const Tensor g2 = g.view({b * c, u * tl});
  for (int i = 0; i < u; ++i)
    for (int p = 0; p < o.pieces(); ++p)
      copy_columns(g2, o.group_start(i, p), send.narrow(i * b * c, b * c), p * o.len(), o.len());
  Tensor recv = Tensor::empty_like(send);
  ul.all_to_all(send, recv);  // block j: this rank's tokens, heads slab_of(j)
  const Tensor r4 = recv.view({u * b, c, tl});
  for (int j = 0; j < u; ++j)
    for (int64_t bi = 0; bi < b; ++bi) s.select(bi).narrow(slab_of(j).first, c).copy_from(r4.select(j * b + bi));
}

// Positions or segment ids [B, Tl] i32 of every member, in the group's order: [B, U Tl].
Tensor ids_to_group(Communicator& ul, const Tensor& ids, const TokenOrder& o) {
  const int u = ul.size();
  const int64_t b = ids.dim(0), tl = ids.dim(1);
  Tensor all = Tensor::empty({u * b, tl}, ids.dtype(), ids.device());
  ul.all_gather(ids, all);
  Tensor g = Tensor::empty({b, u * tl}, ids.dtype(), ids.device());
  for (int i = 0; i < u; ++i)
    for (int64_t bi = 0; bi < b; ++bi)
      for (int p = 0; p < o.pieces(); ++p)
        g.select(bi).narrow(o.group_start(i, p), o.len()).copy_from(all.select(i * b + bi).narrow(p * o.len(), o.len()));
  return g;
}

AttentionMask mask_to_group(Communicator& ul, const AttentionMask& m, const TokenOrder& o) {
  AttentionMask g;
  g.causal = m.causal;
  g.q_pos = ids_to_group(ul, m.q_pos, o);
  g.k_pos = m.k_pos.same_data(m.q_pos) ? g.q_pos : ids_to_group(ul, m.k_pos, o);
  if (m.q_seg.defined()) g.q_seg = ids_to_group(ul, m.q_seg, o);
  if (m.k_seg.defined()) g.k_seg = m.k_seg.same_data(m.q_seg) ? g.q_seg : ids_to_group(ul, m.k_seg, o);
  return g;
}

struct Heads {
  SlabOf q, kv;
  bool kv_replicated;
};

Heads heads_of(const Tensor& q, const Tensor& k, int u) {
  const int64_t hq = q.dim(2), hkv = k.dim(2);
  ROTOR_CHECK(hq % u == 0) << "Ulysses attention: " << hq << " query heads do not split over parallel.ulysses " << u;
  ROTOR_CHECK(hkv % u == 0 || (u % hkv == 0 && hq % hkv == 0))
      << "Ulysses attention: " << hkv << " kv heads and parallel.ulysses " << u << ": one must divide the other";
  Heads h;
  h.q = [hq, u](int j) { return HeadSlab{j * (hq / u), hq / u}; };
  h.kv = [hq, hkv, u](int j) { return ulysses_kv_slab(hq, hkv, u, j); };
  h.kv_replicated = hkv % u != 0;
  return h;
}

}  // namespace

void ulysses_attention_forward(Communicator& ul, Communicator& ring, const Tensor& q, const Tensor& k,
                               const Tensor& v, const AttentionMask& mask, double scale, const Tensor& out,
                               const Tensor& lse, const Tensor& entropy) {
  const int u = ul.size();
  if (u == 1) {
    ring_attention_forward(ring, q, k, v, mask, scale, out, lse, entropy);
    return;
  }
  const Heads h = heads_of(q, k, u);
  const TokenOrder o{u, q.dim(1)};
  const Tensor qg = to_group(ul, q, h.q, o), kg = to_group(ul, k, h.kv, o), vg = to_group(ul, v, h.kv, o);
  const AttentionMask mg = mask_to_group(ul, mask, o);
  const Tensor og = Tensor::empty_like(qg);
  const Tensor lg = Tensor::empty({q.dim(0), qg.dim(2), qg.dim(1)}, lse.dtype(), lse.device());
  const Tensor eg = entropy.defined() ? Tensor::empty_like(lg) : Tensor();
  ring_attention_forward(ring, qg, kg, vg, mg, scale, og, lg, eg);
  from_group(ul, og, h.q, o, out, false);
  stat_from_group(ul, lg, h.q, o, lse);
  if (entropy.defined()) stat_from_group(ul, eg, h.q, o, entropy);
}

void ulysses_attention_backward(Communicator& ul, Communicator& ring, const Tensor& q, const Tensor& k,
                                const Tensor& v, const AttentionMask& mask, double scale, const Tensor& out,
                                const Tensor& lse, const Tensor& dout, const Tensor& dq, const Tensor& dk,
                                const Tensor& dv) {
  const int u = ul.size();
  if (u == 1) {
    ring_attention_backward(ring, q, k, v, mask, scale, out, lse, dout, dq, dk, dv);
    return;
  }
  const Heads h = heads_of(q, k, u);
  const TokenOrder o{u, q.dim(1)};
  const Tensor qg = to_group(ul, q, h.q, o), kg = to_group(ul, k, h.kv, o), vg = to_group(ul, v, h.kv, o);
  const Tensor og = to_group(ul, out, h.q, o), dog = to_group(ul, dout, h.q, o);
  const Tensor lg = stat_to_group(ul, lse, h.q, o);
  const AttentionMask mg = mask_to_group(ul, mask, o);
  const Tensor dqg = Tensor::empty_like(qg), dkg = Tensor::empty_like(kg), dvg = Tensor::empty_like(vg);
  ring_attention_backward(ring, qg, kg, vg, mg, scale, og, lg, dog, dqg, dkg, dvg);
  from_group(ul, dqg, h.q, o, dq, false);
  from_group(ul, dkg, h.kv, o, dk, h.kv_replicated);
  from_group(ul, dvg, h.kv, o, dv, h.kv_replicated);
}

}  // namespace rotor
