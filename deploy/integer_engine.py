"""Integer-only inference of a fully quantized model (any model that describes its blocks), in numpy.

This is the reference the C export is checked against, and it is checked itself against the
fixed-point simulation of ``fixedpoint/layers.py``: for every clip
``logits_int(quantize_input(x)) == model.logits(x) * 2**fl_out(last layer)`` exactly (model in eval
mode, where the simulation computes in float64 and every sum of integer codes is exact).

Data path of one layer, with codes ``x`` at scale 2^-fl_in and weight codes at 2^-fl_w:

    acc = wrap(sum x * w + bias, bits_accumulator)     bias pre-rounded to scale 2^-(fl_in+fl_w)
    y   = requantize(acc, fl_in + fl_w -> fl_out)       rounding shift, saturated to bits_outputs
    then what the block states (fixedpoint/graph.py): relu, max pool k x k (floor mode) or global
    average pool (sum of codes / positions, rounded half away from zero, ``round_div``)
    next layer's input = requantize(y, fl_out -> fl_in of the next layer)

Convolutions may have stride and zero padding (code 0 is the value 0) and be depthwise (kernel k
reads channel k only).

Rounding is half away from zero (as ``fixedpoint.fixed_point.round_half_away``), the
accumulator wraps in two's complement like a register of ``bits_accumulator`` bits. The only
float step is ``quantize_input``. Data are int8/int16 (bits <= 8 / <= 16), accumulators int64
(the C export uses the narrowest 16-, 32- or 64-bit register that holds bits_accumulator).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view

from deploy.compact import compact_model
from fixedpoint.fixed_point import code_limits, to_integer
from fixedpoint.execution import round_div
from fixedpoint.graph import describe
from fixedpoint.layers import fixed_point_layers
from utils.errors import UserError

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from model.registry import KeywordModel

MAX_DATA_BITS = 16          # inputs, weights and outputs are stored as int8 or int16
MAX_ACCUMULATOR_BITS = 48   # the float64 simulation is exact only below 2^53; 48 bits never
                            # wrap for this model (16x16-bit products x 184 inputs < 2^39)
MAX_RIGHT_SHIFT = 62        # (|acc| + 2^(shift-1)) stays below 2^63
MAX_LEFT_SHIFT = 47         # a saturated 16-bit code times 2^shift stays below 2^63


def data_dtype(bits: int) -> type[np.int8] | type[np.int16]:
    """Smallest numpy integer type holding ``bits``-bit two's-complement codes."""
    return np.int8 if bits <= 8 else np.int16


def wrap(acc: np.ndarray, bits: int) -> np.ndarray:
    """Two's-complement wraparound of int64 ``acc`` to ``bits`` bits (sign extension of the low
    bits, done on the unsigned view so it is defined for every value)."""
    unused = 64 - bits
    return (acc.view(np.uint64) << np.uint64(unused)).view(np.int64) >> np.int64(unused)


def requantize(values: np.ndarray, shift: int, bits: int) -> np.ndarray:
    """Integer codes ``values`` (int64) divided by 2^shift, rounded half away from zero, saturated
    to ``bits`` bits. A negative shift multiplies (after saturating, so it cannot overflow)."""
    lo, hi = code_limits(bits)
    if shift > 0:
        half = np.int64(1 << (shift - 1))
        values = np.sign(values) * ((np.abs(values) + half) >> np.int64(shift))
    elif shift < 0:
        values = np.clip(values, lo, hi) << np.int64(-shift)
    return np.clip(values, lo, hi)


@dataclass(frozen=True)
class IntegerLayer:
    """One block as integer codes and fixed-point formats (fl = fractional length)."""
    name: str
    kind: str                 # "conv", "depthwise" or "linear"
    relu: bool
    input_shape: tuple        # (C, H, W) for conv, (F,) for linear
    weight: np.ndarray        # int8/int16 codes: (out, in, kh, kw), (C, 1, kh, kw) or (out, in)
    bias: np.ndarray          # int64 codes at scale 2^-(fl_inputs + fl_weights)
    bits_inputs: int
    fl_inputs: int
    bits_weights: int
    fl_weights: int
    bits_accumulator: int
    bits_outputs: int
    fl_outputs: int
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)
    maxpool: int = 0          # k x k max pooling after the relu
    avgpool: bool = False     # global average pooling after the relu

    @property
    def output_shift(self) -> int:
        """Right shift from the accumulator scale to the output format."""
        return self.fl_inputs + self.fl_weights - self.fl_outputs

    @property
    def conv_shape(self) -> tuple[int, int, int]:
        """(out channels, H, W) of the convolution before pooling."""
        _, h, w = self.input_shape
        (kh, kw), (sh, sw), (ph, pw) = self.weight.shape[2:], self.stride, self.padding
        return (self.weight.shape[0], (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1)

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Shape after the layer's relu and pooling (what the next layer reads)."""
        if self.kind == "linear":
            return (self.weight.shape[0],)
        c, h, w = self.conv_shape
        if self.avgpool:
            return (c, 1, 1)
        k = self.maxpool or 1
        return (c, h // k, w // k)

    def _accumulate(self, x):
        if self.kind == "linear":
            return x @ self.weight.T.astype(np.int64) + self.bias
        (ph, pw), (sh, sw) = self.padding, self.stride
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        windows = sliding_window_view(x, self.weight.shape[2:], axis=(2, 3))[:, :, ::sh, ::sw]
        w = self.weight.astype(np.int64)
        if self.kind == "depthwise":
            acc = np.einsum("nchwij,cij->nchw", windows, w[:, 0])
        else:
            acc = np.tensordot(windows, w, axes=([1, 4, 5], [1, 2, 3])).transpose(0, 3, 1, 2)
        return acc + self.bias[None, :, None, None]

    def forward(self, x: np.ndarray) -> np.ndarray:
        """int8/int16 codes in this layer's input format -> int64 codes in its output format
        (after relu and pooling)."""
        acc = self._accumulate(x.astype(np.int64))
        y = requantize(wrap(acc, self.bits_accumulator), self.output_shift, self.bits_outputs)
        if self.relu:
            y = np.maximum(y, 0)
        if self.maxpool:
            n, c, h, w = y.shape
            k = self.maxpool
            y = y[:, :, :h // k * k, :w // k * k].reshape(n, c, h // k, k, w // k, k).max(axis=(3, 5))
        if self.avgpool:
            y = round_div(y.sum(axis=(2, 3), keepdims=True), y.shape[2] * y.shape[3])
        return y


def _check_quantized(name, q):
    groups = {"bits_inputs": q.bits_inputs, "bits_weights": q.bits_weights,
              "bits_accumulator": q.bits_accumulator, "bits_outputs": q.bits_outputs}
    unset = [group for group, bits in groups.items() if bits <= 0]
    if unset:
        raise UserError(f"layer {name} is not fully quantized ({', '.join(unset)} = 0); integer "
                        f"inference needs every layer's inputs, weights, accumulator and outputs "
                        f"in fixed point: apply a complete quantization.yml")
    wide = [group for group, bits in groups.items()
            if bits > (MAX_ACCUMULATOR_BITS if group == "bits_accumulator" else MAX_DATA_BITS)]
    if wide:
        raise UserError(f"layer {name}: {', '.join(f'{g} = {groups[g]}' for g in wide)} too wide; "
                        f"integer inference supports data up to {MAX_DATA_BITS} bits and "
                        f"accumulators up to {MAX_ACCUMULATOR_BITS} bits")


def _check_shifts(layers):
    """Rescaling shifts must stay where int64 arithmetic is exact: right shifts below 63, left
    shifts of saturated 16-bit codes below 48."""
    shifts = [(f"{a.name} accumulator -> output", a.output_shift) for a in layers]
    shifts += [(f"{a.name} output -> {b.name} input", a.fl_outputs - b.fl_inputs)
               for a, b in zip(layers, layers[1:])]
    bad = [f"{what} ({shift})" for what, shift in shifts if not -MAX_LEFT_SHIFT <= shift <= MAX_RIGHT_SHIFT]
    if bad:
        raise UserError(f"fixed-point formats too far apart for integer rescaling: {', '.join(bad)}; "
                        f"check the il_* values in quantization.yml")


class IntegerModel:
    """A fully quantized model as integer layers (pruned kernels removed)."""

    def __init__(self, layers) -> None:
        self.layers = tuple(layers)

    @classmethod
    def from_model(cls, model: KeywordModel, input_shape: Sequence[int] | None = None) -> IntegerModel:
        """Convert the model's weights to codes and its biases to accumulator-scale codes, rounded
        exactly as the simulation rounds them. Every layer must be fully quantized and every batch
        norm folded into its conv."""
        for name, layer in fixed_point_layers(model).items():
            _check_quantized(name, layer.quantization)
        graph = describe(model)
        unfolded = [b.name for b in graph.blocks if b.batchnorm is not None and not bool(b.batchnorm.folded)]
        if unfolded:
            raise UserError(f"the batch norm of {', '.join(unfolded)} is not folded into its conv; "
                            f"fold it (fixedpoint.folding.fold_batchnorm) before quantizing")
        compact = describe(compact_model(model))
        shape = tuple(input_shape or graph.input_shape)
        layers = []
        for block in compact.blocks:
            name, layer = block.name, block.layer
            q = layer.quantization
            fl_in, fl_w = q.inputs.fl, q.weights.fl
            with torch.no_grad():
                w, b = layer._masked_params()  # the simulation's own masking: same codes
                w_codes = q.weights.codes(w.double())
                b_codes = q.bias_codes(b.double())
            kind = block.kind
            if kind == "linear":
                shape = (int(np.prod(shape)),)
            conv = {} if kind == "linear" else dict(stride=tuple(layer.stride), padding=tuple(layer.padding))
            integer_layer = IntegerLayer(
                name=name, kind=kind, relu=block.relu, maxpool=block.maxpool, avgpool=block.avgpool,
                input_shape=shape, **conv,
                weight=w_codes.numpy().astype(data_dtype(q.bits_weights)),
                bias=b_codes.numpy().astype(np.int64),
                bits_inputs=q.bits_inputs, fl_inputs=fl_in,
                bits_weights=q.bits_weights, fl_weights=fl_w,
                bits_accumulator=q.bits_accumulator,
                bits_outputs=q.bits_outputs,
                fl_outputs=q.outputs.fl)
            layers.append(integer_layer)
            shape = integer_layer.output_shape
        _check_shifts(layers)
        return cls(layers)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.layers[0].input_shape

    @property
    def input_bits(self) -> int:
        return self.layers[0].bits_inputs

    @property
    def input_fl(self) -> int:
        return self.layers[0].fl_inputs

    @property
    def output_fl(self) -> int:
        """Scores are logits * 2^output_fl."""
        return self.layers[-1].fl_outputs

    def quantize_input(self, features: np.ndarray | torch.Tensor) -> np.ndarray:
        """Float features (N x C x H x W, array or tensor) -> int8/int16 codes of the first layer's
        input format, rounded as the simulation rounds them (float32 in, as the model receives)."""
        if isinstance(features, torch.Tensor):
            features = features.detach().cpu().numpy()
        x = np.asarray(features, dtype=np.float32)
        if x.ndim != 4 or x.shape[1:] != self.input_shape:
            raise UserError(f"features have shape {x.shape}; expected (N, "
                            f"{', '.join(map(str, self.input_shape))})")
        if not np.isfinite(x).all():
            raise UserError("features contain NaN or infinite values; check the feature extraction")
        codes = to_integer(torch.from_numpy(x).double(), self.input_bits, self.input_fl)  # as the simulation
        return codes.numpy().astype(data_dtype(self.input_bits))

    def logits_int(self, codes: ArrayLike) -> np.ndarray:

        """Input codes (N x C x H x W integers) -> int32 scores (N x classes) = logits * 2^output_fl."""
        codes = np.asarray(codes)
        if not np.issubdtype(codes.dtype, np.integer):
            raise UserError(f"logits_int takes integer feature codes, got {codes.dtype}; "
                            f"convert float features with quantize_input first")
        if codes.ndim != 4 or codes.shape[1:] != self.input_shape:
            raise UserError(f"feature codes have shape {codes.shape}; expected (N, "
                            f"{', '.join(map(str, self.input_shape))})")
        lo, hi = code_limits(self.input_bits)
        if codes.size and (codes.min() < lo or codes.max() > hi):
            raise UserError(f"feature codes outside the {self.input_bits}-bit range "
                            f"[{lo}, {hi}]; produce them with quantize_input")
        x = codes.astype(data_dtype(self.input_bits))
        for layer, following in zip(self.layers, self.layers[1:] + (None,)):
            if layer.kind == "linear" and x.ndim > 2:
                x = x.reshape(len(x), -1)
            x = layer.forward(x)
            if following is not None:
                x = requantize(x, layer.fl_outputs - following.fl_inputs, following.bits_inputs)
                x = x.astype(data_dtype(following.bits_inputs))
        return x.astype(np.int32)
