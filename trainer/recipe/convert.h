// Typed conversions between the sections of a recipe (recipe.proto) and the
// configs of model/ and data/, in both directions where both are needed:
//
//   recipe::RopeSection        <-> RopeConfig        (model/rope.h)
//   recipe::LogitScaleSection  <-> LogitScaleConfig  (model/rope.h)
//   recipe::ModelSection       <-> LlamaConfig       (model/config.h)
//   recipe::Dataset::Format     -> DocumentFormat    (data/documents.h)
//
// Sections -> configs read the keys present over the config's own defaults,
// which are the defaults of the recipe (with_defaults in recipe.cc writes the
// same values into a resolved recipe). They check only what the conversion
// needs (an enum spelling, a key without which the method means nothing);
// range checks are validate_rope / validate_logit_scale / LlamaConfig::validate.
// Configs -> sections write every key the method or kind reads, so that
// rope_config(section of c) == c for every valid c (rope.sequence_length,
// runtime state, is not written).
#pragma once

#include "absl/status/statusor.h"
#include "data/documents.h"
#include "kernels/tensor.h"
#include "model/config.h"
#include "model/rope.h"
#include "trainer/recipe/recipe.pb.h"

namespace rotor {

// The device the recipe's `device` names, for this process: cpu, sim, or
// cuda:N with N the current CUDA device (the GPU the process world chose for
// this rank: parallel/world.h, ProcessWorld::use_device). cuda where no GPU
// can be used is an error with the CUDA runtime's reason ("device: cuda: no
// usable CUDA device: CUDA driver version is insufficient ..."), never a
// silent fall back to the CPU.
absl::StatusOr<Device> recipe_device(const recipe::Recipe& r);
// The kind of device alone (no GPU check): what ProcessWorld::use_device takes.
DeviceType recipe_device_type(const recipe::Recipe& r);

// Errors: an unknown rope.method ("unknown rope.method 'ntk2'; accepted:
// ..."), and "rope.factor is required for rope.method=M" for every method
// but none and longrope when rope.factor is absent.
absl::StatusOr<RopeConfig> rope_config(const recipe::RopeSection& section);

// Errors: an unknown logit_scale.kind.
absl::StatusOr<LogitScaleConfig> logit_scale_config(const recipe::LogitScaleSection& section);

// The sizes present over LlamaConfig's defaults (head_dim absent: 0, i.e.
// hidden_size / num_attention_heads). rope_theta keeps its default: it is
// rope.theta, which the caller copies from the rope config.
LlamaConfig llama_config(const recipe::ModelSection& section);

// The reverse, for recipes written from configs (rotor import-hf). Each sets
// the section's keys from the config (keys it does not write are left alone).
void set_rope_section(const RopeConfig& rope, recipe::RopeSection& section);
void set_logit_scale_section(const LogitScaleConfig& scale, recipe::LogitScaleSection& section);
// Every size, head_dim resolved (never 0); init_from is left alone.
void set_model_section(const LlamaConfig& config, recipe::ModelSection& section);

// data.datasets[i].format: absent -> kDetect.
DocumentFormat document_format(const recipe::Dataset& dataset);

}  // namespace rotor
