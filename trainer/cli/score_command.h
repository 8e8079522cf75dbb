// `rotor score`: the per-token log-probabilities of a text under a checkpoint.
//
//   rotor score CHECKPOINT_DIR (--tokens FILE | --text FILE) [--logits OUT]
//
// CHECKPOINT_DIR is a checkpoint directory (state.json, model.safetensors,
// recipe.yaml; see trainer/checkpoint.h) or a run directory, whose latest
// checkpoint is taken. The model is built from the checkpoint's resolved
// recipe.yaml and its weights are loaded with their checksums verified;
// model.init_from in that recipe is ignored (the checkpoint has the weights)
// and the recipe's data paths need not exist.
//
// Input: --tokens FILE holds whitespace-separated token ids; --text FILE is
// tokenized with the checkpoint's tokenizer: <ckpt>/tokenizer.model when
// present, else the recipe's data.tokenizer. No bos/eos is added (rotor prep
// adds none at document starts either); put them in a --tokens file to score
// with them. At least 2 tokens.
//
// The whole sequence is one forward pass (a batch of 1, positions 0..n-1, no
// document masking) with the logits materialised: n * vocab_size * 4 bytes
// (8192 tokens of a 32000-id vocabulary: 1 GiB), so this is for texts up to a
// few thousand tokens, not for whole evaluation sets.
//
// Output, stdout: one JSON line per input token,
//   {"index": i, "token": id, "logprob": log p(token i | tokens < i)}
// with "logprob": null for i = 0 (no context), computed in double from the
// f32 logits of position i-1; with --text also "text": the decoded piece of
// the token alone (bytes that are not valid UTF-8 on their own appear as
// U+FFFD; a SentencePiece piece decoded alone loses its leading space).
// stderr: a summary (tokens scored, mean negative log-likelihood in nats,
// perplexity, checkpoint). --logits OUT writes the raw logits: little-endian
// float32 [n, vocab_size], row-major, row i the logits at position i (the
// distribution of token i+1).
//
// Errors are "rotor score: MESSAGE" on stderr. Status 2: usage and input
// errors (an unknown option, both or neither of --tokens/--text, a missing
// file, not a checkpoint, a bad token id, fewer than 2 tokens); status 1:
// failures after that (a corrupted checkpoint file, an unwritable --logits).
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace rotor {

// Runs `rotor score` with the words after "score": JSON lines to `out`,
// summary and errors to `err`. Returns 0, 1 or 2 (see above); --help prints
// the usage to `out` and returns 0.
int run_score_command(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace rotor
