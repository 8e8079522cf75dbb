"""Llama with rotor's attention-logit scalar, for transformers' trust_remote_code.

`rotor export-hf --with-modeling-code` writes this file next to config.json
and adds to config.json:

    "auto_map": {"AutoModelForCausalLM": "modeling_rotor_llama.RotorLlamaForCausalLM"}

so that

    AutoModelForCausalLM.from_pretrained(DIR, trust_remote_code=True)

builds a LlamaForCausalLM whose queries are multiplied, per layer and absolute
position i, by the scalar recorded in config.json "rotor_logit_scale"
(rotor's model/rope.h logit_scale_at):

    kind none           t = 1
    kind constant       t = value
    kind log_position   t = max(min, ln(i + 1) / ln(base_length))   (entropy-aware ABF)
    layers in skip_layers: t = 1

rotor multiplies the rotated query; RoPE is linear and acts on each position
separately, so multiplying the q_proj output before RoPE is the same thing.
That is how this file does it, with a forward hook on every layer's q_proj,
which keeps transformers' own attention code (eager, sdpa or flash) in use.
Positions are the model's position_ids; when the caller gives none they are
derived as transformers does: cache_position, else the cached length onward.
Without trust_remote_code transformers loads the plain LlamaForCausalLM and
ignores the scalar (rotor's export prints a warning saying so).
"""
import math

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def rotor_logit_scale(spec, layer, positions):
    """The query multiplier [..., T] (float32) of `layer` at integer `positions`."""
    ones = torch.ones(positions.shape, dtype=torch.float32, device=positions.device)
    kind = spec.get("kind", "none")
    if kind == "none" or layer in spec.get("skip_layers", []):
        return ones
    if kind == "constant":
        return ones * float(spec["value"])
    if kind == "log_position":
        t = torch.log(positions.to(torch.float64) + 1.0) / math.log(float(spec["base_length"]))
        return torch.clamp(t, min=float(spec.get("min", 1.0))).to(torch.float32)
    raise ValueError(f"rotor_logit_scale: unknown kind {kind!r}")


def _cached_length(past_key_values):
    if past_key_values is None:
        return 0
    if hasattr(past_key_values, "get_seq_length"):
        return int(past_key_values.get_seq_length())
    return int(past_key_values[0][0].shape[-2])  # legacy tuple cache: [B, H, T, D]


class RotorLlamaForCausalLM(LlamaForCausalLM):
    config_class = LlamaConfig

    def __init__(self, config):
        super().__init__(config)
        self._rotor_positions = None
        spec = getattr(config, "rotor_logit_scale", None) or {"kind": "none"}
        for i, layer in enumerate(self.model.layers):
            if spec.get("kind", "none") != "none" and i not in spec.get("skip_layers", []):
                layer.self_attn.q_proj.register_forward_hook(self._scale_hook(spec, i))

    def _scale_hook(self, spec, layer):
        def hook(module, inputs, output):  # output [B, T, Hq * head_dim]
            positions = self._rotor_positions
            if positions is None:
                raise RuntimeError("RotorLlamaForCausalLM: q_proj called outside forward()")
            t = rotor_logit_scale(spec, layer, positions.to(output.device))
            return output * t.to(output.dtype).unsqueeze(-1)

        return hook

    def forward(self, input_ids=None, *args, **kwargs):
        positions = kwargs.get("position_ids")
        if positions is None:
            cache_position = kwargs.get("cache_position")
            if cache_position is not None:
                positions = cache_position.unsqueeze(0)
            else:
                x = input_ids if input_ids is not None else kwargs["inputs_embeds"]
                start = _cached_length(kwargs.get("past_key_values"))
                positions = torch.arange(start, start + x.shape[1], device=x.device).unsqueeze(0)
        self._rotor_positions = positions
        try:
            return super().forward(input_ids, *args, **kwargs)
        finally:
            self._rotor_positions = None
