// Packing the documents of a dataset (data/documents.h: a Megatron indexed
// dataset, llm.c shards) into training samples of a fixed length, in a
// deterministic shuffled order that can be resumed.
//
// Epoch e is the stream of all documents (an indexed dataset's: each the
// concatenation of its sequences, prep appending the end-of-document token;
// llm.c's: each starting with its BOS token) in the order of a
// permutation drawn from (seed, e). Sample j of the epoch covers stream tokens
// [j L, j L + L + 1): L inputs and the L next-token targets (so consecutive
// samples share one token, as in Megatron's GPT dataset). The samples of an
// epoch are visited in the order of a second permutation from (seed, e), so a
// sample's contents depend only on (dataset, L, seed, global index): resuming
// needs nothing but the index of the next sample.
//
// Blocks (PackingOptions::block_length B, a multiple of L; default L): the
// second permutation orders blocks of B stream tokens, and the B / L samples
// of a block are visited one after another. The first k B / L samples of
// an epoch then cover exactly k blocks at every L dividing B, so a run whose
// sequence length changes (multi-stage recipes, trainer/data_stream.h) goes
// on at the next block without reading a token twice in the epoch. An epoch
// holds floor((tokens - 1) / B) blocks. B = L is the scheme above.
//
// Per sample (all [L] i32):
//   ids        input tokens
//   targets    next tokens; with document_masking, the target that would cross
//              into the next document is -1 (not counted in the loss)
//   positions  0..L-1; with document_masking, the position inside the current
//              document, restarting at 0 where a document starts (a document
//              already running when the sample starts counts from 0 there)
//   segments   all 0; with document_masking, 0, 1, 2, ... per document in the
//              sample, so attention stays inside a document
// With loss_on_last_sequence, a target before its document's last sequence
// is -1 too.
//
// PoSE (pose_target_length N > 0; arXiv 2309.10400, its code's 2023-10
// revision): each piece of the sample with its own positions 0..l-1 (the
// whole sample, or with document_masking each document's part) keeps
// positions 0..r1-1 for its first r1 tokens, r1 uniform in [1, (l + 1) / 2],
// and shifts the others by u uniform in [0, N - l], so they read
// r1 + u .. l - 1 + u < N. r1 and u come from (seed, the sample's index):
// pose_positions below.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "data/documents.h"

namespace rotor {

struct PackingOptions {
  int64_t sequence_length = 0;  // L
  uint64_t seed = 0;
  bool document_masking = false;
  // false: documents and samples in dataset order (sample j = stream tokens
  // [jL, jL + L]), for evaluation windows that cover the same text at every L.
  bool shuffle = true;
  // Count only the targets inside each document's last sequence
  // (DocumentSource::last_sequence_start): the others are -1, their tokens
  // are context only (prompt/completion data, the answer of a synthetic
  // retrieval document).
  bool loss_on_last_sequence = false;
  // One whole document per sample instead of the concatenated stream: sample
  // j is document j of the epoch's order, its first L tokens (a longer one is
  // cut), padded after its end with id 0, target -1, segment 1, position 0;
  // an epoch has one sample per non-empty document. For documents whose
  // position in the sample must not depend on their neighbours (synthetic
  // retrieval documents of varied length).
  bool whole_documents = false;
  // Stream tokens per shuffled block (see above): a multiple of
  // sequence_length; 0: sequence_length.
  int64_t block_length = 0;
  // PoSE's target length N (see above); 0: off. >= sequence_length.
  int64_t pose_target_length = 0;
};

struct PackedSample {
  std::vector<int32_t> ids, targets, positions, segments;  // [L] each
};

class PackedSampler {
 public:
  // `dataset` must outlive the sampler. Errors if the dataset holds fewer
  // than L + 1 tokens.
  static absl::StatusOr<PackedSampler> create(const DocumentSource* dataset,
                                              const PackingOptions& options);

  int64_t samples_per_epoch() const { return samples_per_epoch_; }
  // Sample number `index` (epoch index / samples_per_epoch).
  absl::StatusOr<PackedSample> sample(int64_t index);

 private:
  PackedSampler(const DocumentSource* dataset, const PackingOptions& options);
  void prepare_epoch(int64_t epoch);
  // Reads stream tokens [start, start + count) of the current epoch.
  absl::Status read_stream(int64_t start, int64_t count, std::vector<int32_t>& tokens,
                           std::vector<int64_t>& doc_of_token);
  // whole_documents: the sample of document `doc`.
  absl::StatusOr<PackedSample> whole_document(int64_t doc) const;
  std::vector<int64_t> nonempty_;     // whole_documents: the documents with tokens

  const DocumentSource* dataset_;
  PackingOptions options_;
  std::vector<int64_t> doc_tokens_;   // tokens per document (dataset order)
  std::vector<int64_t> loss_from_;    // loss_on_last_sequence: last_sequence_start per document
  int64_t total_tokens_ = 0;
  int64_t samples_per_epoch_ = 0;
  int64_t epoch_ = -1;
  std::vector<int64_t> doc_order_;    // permutation of documents for epoch_
  std::vector<int64_t> doc_start_;    // stream offset of doc_order_[i]; size docs + 1
  int64_t block_ = 0;                 // block_length (B)
  std::vector<int64_t> block_order_;  // permutation of the epoch's blocks
};

// PoSE's position ids in place: every run of equal `segments` among the
// first `length` entries (positions 0, 1, ... inside it) is cut and skipped
// as described above, drawing r1 and u from (seed, index) (two draws per
// piece). Positions past `length` (padding) are left alone.
void pose_positions(std::vector<int32_t>& positions, const std::vector<int32_t>& segments, int64_t length,
                    int64_t target_length, uint64_t seed, int64_t index);

// The permutation of [0, n) drawn from (seed, stream) by Fisher-Yates with
// counter-based random numbers (kernels/random.h): the same on every machine.
std::vector<int64_t> seeded_permutation(int64_t n, uint64_t seed, uint64_t stream);

}  // namespace rotor
