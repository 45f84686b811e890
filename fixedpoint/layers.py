"""Convolution and linear layers that can run in simulated dynamic fixed point and be pruned.

They subclass ``nn.Conv2d`` / ``nn.Linear`` so a float model's state dict (``<layer>.weight``,
``<layer>.bias``, ...) loads unchanged; with no quantization set and no kernel pruned they compute
exactly what the torch layers compute.

Quantized data path of one layer (each group optional, 0 bits = float):

    x_q  = Q(x, bits_inputs, il_inputs)                 input codes, scale 2^-fl_in
    w_q  = Q(w * mask, bits_weights, il_weights)        weight codes, scale 2^-fl_w
    b_q  = bias at the accumulator scale 2^-(fl_in + fl_w), saturated to bits_accumulator
    acc  = wrap(sum x_q * w_q + b_q, bits_accumulator)  two's-complement register
    y    = Q(acc, bits_outputs, il_outputs)

In evaluation mode the quantized path is exact, so the simulation equals the integer engine bit for
bit: in float32 when a layer's accumulator bound (largest |input code| x largest kernel sum of
|weight codes| + |bias code|) stays below 2^24, so that every partial sum is an integer float32
holds exactly, else in float64. The wraparound pass is skipped when that bound shows the register
cannot overflow. In training mode it stays in float32 for speed; gradients pass straight through
the rounding (STE).
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from fixedpoint.fixed_point import Format, code_limits, round_half_away_exact, wrap


@dataclass
class LayerQuantization:
    """Fixed-point formats of one layer, as stored per layer in quantization.yml."""
    bits_inputs: int = 0
    bits_weights: int = 0
    bits_accumulator: int = 0
    bits_outputs: int = 0
    il_inputs: int = 0
    il_weights: int = 0
    il_outputs: int = 0

    @classmethod
    def from_formats(cls, inputs: Format, weights: Format, outputs: Format, bits_accumulator: int = 0) -> LayerQuantization:
        """The layer's formats from its three ``Format`` values and the register width."""
        return cls(bits_inputs=inputs.bits, bits_weights=weights.bits, bits_accumulator=bits_accumulator,
                   bits_outputs=outputs.bits, il_inputs=inputs.il, il_weights=weights.il, il_outputs=outputs.il)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @property
    def enabled(self) -> bool:
        return bool(self.bits_inputs or self.bits_weights or self.bits_accumulator or self.bits_outputs)

    @property
    def integer_accumulator(self) -> bool:
        """True when inputs and weights are both fixed point, so the sum is an integer register."""
        return bool(self.bits_inputs and self.bits_weights)

    @property
    def inputs(self) -> Format:
        return Format(self.bits_inputs, self.il_inputs)

    @property
    def weights(self) -> Format:
        return Format(self.bits_weights, self.il_weights)

    @property
    def outputs(self) -> Format:
        return Format(self.bits_outputs, self.il_outputs)

    @property
    def fl_accumulator(self) -> int:
        return self.inputs.fl + self.weights.fl

    def bias_codes(self, bias: torch.Tensor) -> torch.Tensor:
        """The bias as integer codes at the accumulator scale 2^-fl_accumulator, saturated to
        bits_accumulator (the simulation and the integer engine use these same codes)."""
        codes = round_half_away_exact(bias * 2.0 ** self.fl_accumulator)
        if self.bits_accumulator:
            lo, hi = code_limits(self.bits_accumulator)
            codes = torch.clamp(codes, lo, hi)
        return codes


class _FixedPointMixin:
    """Shared state and data path; subclasses supply ``_op(x, w, b)`` and ``kernel_dims``."""

    def _init_fixed_point(self) -> None:
        self.quantization = LayerQuantization()
        # 1 = kernel kept, 0 = pruned. Not persistent: pruning lives in pruning.yml.
        self.register_buffer("kernel_mask", torch.ones(self.out_channels_or_features), persistent=False)
        self.accumulator_probe = None  # called with the integer accumulator before it wraps (sizing)

    @property
    def out_channels_or_features(self) -> int:
        return self.weight.shape[0]

    @property
    def pruned_kernels(self) -> list[int]:
        return [int(i) for i in torch.nonzero(self.kernel_mask == 0).flatten()]

    def prune_kernels(self, indices: Iterable[int]) -> None:
        """Mask the given output kernels (and zero their weights and bias, so they stay zero even
        without the mask). Earlier pruning is kept."""
        indices = [int(i) for i in indices]
        n = self.out_channels_or_features
        bad = [i for i in indices if not 0 <= i < n]
        if bad:
            raise ValueError(f"kernel indices {bad} out of range for a layer with {n} kernels")
        with torch.no_grad():
            self.kernel_mask[indices] = 0.0
            self.weight[indices] = 0.0
            if self.bias is not None:
                self.bias[indices] = 0.0

    def _masked_params(self):
        shape = (-1,) + (1,) * (self.weight.dim() - 1)
        w = self.weight * self.kernel_mask.view(shape)
        b = self.bias * self.kernel_mask if self.bias is not None else None
        return w, b

    def accumulator_bound(self, w: torch.Tensor, b: torch.Tensor | None, bias_codes: torch.Tensor | None = None) -> float:
        """A bound on |any partial sum| of the integer accumulator over any input the input format
        can hold: the largest |input code| times the largest sum of |weight codes| of one kernel,
        plus the largest |bias code| (``bias_codes``: those of ``b``, when the caller has them).
        Computed from the weights alone (no pass over activations)."""
        q = self.quantization
        codes = q.weights.codes(w.detach()).abs_().flatten(1).sum(dim=1)
        bound = float(codes.max()) * 2.0 ** (q.bits_inputs - 1)
        if b is not None:
            bias_codes = q.bias_codes(b.detach()) if bias_codes is None else bias_codes
            bound += float(bias_codes.abs().max())
        return bound

    def _float32_is_exact(self, bound):
        """Integer codes and every partial sum below 2^24 are exact in float32, so the evaluation
        may run there instead of float64 (scales stay far inside float32's exponent range)."""
        q = self.quantization
        return (q.integer_accumulator and bound < 2.0 ** 24 and max(q.bits_inputs, q.bits_weights) <= 24
                and q.bits_outputs <= 24 and abs(q.fl_accumulator) < 100 and abs(q.outputs.fl) < 100)

    def forward(self, x: torch.Tensor, quantize_inputs: bool = True, quantize_outputs: bool = True) -> torch.Tensor:
        """``quantize_inputs=False``: ``x`` already holds codes of this layer's input format;
        ``quantize_outputs=False``: leave the output quantization to the caller (the graph applies
        it after relu and max pooling, which it commutes with, on a smaller tensor)."""
        w, b = self._masked_params()
        q = self.quantization
        if not q.enabled:
            return self._op(x, w, b)
        exact = not self.training
        bias_codes = q.bias_codes(b.detach()) if q.integer_accumulator and b is not None else None
        bound = self.accumulator_bound(w, b, bias_codes) if q.integer_accumulator else None
        # evaluation of an integer sum is exact: float32 where it provably fits the mantissa, else
        # float64. A sum that is no integer (only the weights or only the inputs quantized: the
        # search's one-group candidates) is float arithmetic like the float model's, in its dtype.
        dtype = x.dtype if not exact or not q.integer_accumulator or self._float32_is_exact(bound) else torch.float64
        x = x.to(dtype)
        if quantize_inputs:
            x = q.inputs.quantize(x, exact)
        w = q.weights.quantize(w.to(dtype), exact)
        if b is not None:
            b = b.to(dtype)
        if q.integer_accumulator:
            scale = 2.0 ** q.fl_accumulator
            if b is not None:
                codes = bias_codes if bias_codes.dtype == dtype else q.bias_codes(b.detach())  # float64: exact
                b = b + (codes / scale - b).detach()  # straight-through
            y = self._op(x, w, b)
            may_wrap = bool(q.bits_accumulator) and bound >= 2.0 ** (q.bits_accumulator - 1)
            if may_wrap or (q.bits_accumulator and self.accumulator_probe is not None):
                acc = torch.round(y.detach() * scale)  # already integer-valued; round removes fp dust
                if self.accumulator_probe is not None:
                    self.accumulator_probe(acc)
                if may_wrap:
                    y = y + (wrap(acc, q.bits_accumulator) / scale - y).detach()
        else:
            y = self._op(x, w, b)
        if not quantize_outputs:
            return y  # in the dtype it was computed in, exact for the caller's quantize_outputs
        return q.outputs.quantize(y, exact).to(torch.float32)

    def quantize_outputs(self, y: torch.Tensor) -> torch.Tensor:
        """The output quantization ``forward(..., quantize_outputs=False)`` left out."""
        return self.quantization.outputs.quantize(y, not self.training).to(torch.float32)


class FixedPointConv2d(_FixedPointMixin, nn.Conv2d):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_fixed_point()

    def _op(self, x, w, b):
        if w.stride() != self.weight.stride() and self.weight.is_contiguous(memory_format=torch.channels_last):
            # Elementwise ops give a weight whose layout is ambiguous (a size-1 dimension: a first conv's
            # one input channel) NCHW strides, and oneDNN picks the layout from the strides: that conv and
            # its max pooling would run in NCHW, much slower (docs/benchmarks.md, "Channels-last kept in
            # fixed point"). Keep the parameter's layout.
            w = w.to(memory_format=torch.channels_last)
        return self._conv_forward(x, w, b)


class FixedPointLinear(_FixedPointMixin, nn.Linear):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_fixed_point()

    def _op(self, x, w, b):
        return F.linear(x, w, b)


FIXED_POINT_LAYERS = (FixedPointConv2d, FixedPointLinear)


def fixed_point_layers(model: nn.Module) -> dict[str, FixedPointConv2d | FixedPointLinear]:
    """Name -> layer for every fixed-point-capable layer of ``model``, in forward order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, FIXED_POINT_LAYERS)}


class FoldableBatchNorm2d(nn.BatchNorm2d):
    """Batch norm that can be folded into the convolution before it (``fold_into``): the conv then
    computes conv+bn in one affine map, which is what quantization and deployment need (one
    fixed-point layer, no float step between it and the relu). After folding it is the identity,
    in training mode too; the persistent ``folded`` flag travels with the state dict, so a model
    finetuned after folding is restored folded."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.register_buffer("folded", torch.zeros((), dtype=torch.uint8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool(self.folded):
            return x
        return super().forward(x)

    def fold_into(self, conv: nn.Conv2d) -> None:
        """conv(x) -> bn(conv(x)) with the running statistics: w' = w g / s, b' = (b - mean) g / s + beta
        with s = sqrt(var + eps), computed in float64. No-op when already folded."""
        if bool(self.folded):
            return
        with torch.no_grad():
            scale = self.weight.double() / torch.sqrt(self.running_var.double() + self.eps)
            bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
            conv.weight.copy_((conv.weight.double() * scale.view(-1, 1, 1, 1)).float())
            conv.bias.copy_(((bias - self.running_mean.double()) * scale + self.bias.double()).float())
            self.folded.fill_(1)
