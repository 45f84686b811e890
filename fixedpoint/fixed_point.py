"""Dynamic fixed-point arithmetic (Gysel et al. 2016, "Ristretto").

A number format is a bitwidth ``bw`` and an integer length ``il`` (bits left of the binary
point, sign excluded); the fractional length is ``fl = bw - il - 1``. A value is stored as the
two's-complement integer ``round(x * 2^fl)`` saturated to ``[-2^(bw-1), 2^(bw-1) - 1]``.

Rounding is **round half away from zero** everywhere (simulation, integer engine and C code),
because it is what an integer shift-and-round implements symmetrically for both signs, which keeps
the simulation bit-exact with the deployed integer code.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

FLOAT = 0  # a bitwidth of 0 means "leave this group in floating point"


def integer_length(absmax: float | torch.Tensor) -> int:
    """Integer length that covers ``absmax``: ``floor(log2(absmax)) + 1`` (0 for an all-zero range)."""
    absmax = float(absmax)
    if not math.isfinite(absmax) or absmax <= 0.0:
        return 0
    return int(math.floor(math.log2(absmax))) + 1


def fractional_length(bits: int, il: int) -> int:
    return int(bits) - int(il) - 1


def round_half_away(x: torch.Tensor) -> torch.Tensor:
    """Round to the nearest integer, ties away from zero (torch.round would round ties to even)."""
    return torch.sign(x) * torch.floor(torch.abs(x) + 0.5)


def code_limits(bits: int) -> tuple[int, int]:
    """(lowest, highest) two's-complement code of ``bits`` bits."""
    return -(1 << (int(bits) - 1)), (1 << (int(bits) - 1)) - 1


def round_half_away_exact(x: torch.Tensor) -> torch.Tensor:
    """round_half_away without its one inexact input: floor(|x| + 0.5) rounds the sum up to 1 for
    the largest float below 0.5. Truncating and stepping away from zero where the dropped fraction
    (exact) is at least a half is right for every float, float32 included."""
    r = torch.trunc(x)
    return r.add_(torch.sign(x).mul_((x - r).abs_() >= 0.5))


def to_integer(x: torch.Tensor, bits: int, fl: int) -> torch.Tensor:
    """Integer codes of ``x`` in the format (bits, fl): rounded and saturated, same dtype as x."""
    lo, hi = code_limits(bits)
    return round_half_away_exact(x * (2.0 ** fl)).clamp_(lo, hi)


def _fake_quantize(x, bits, fl):
    """Training-time quantization in three in-place passes after the scaling and the sign:
    trunc(v + sign(v)/2) is sign(v) * floor(|v| + 1/2) bit for bit (rounding is symmetric in sign),
    as the float32 training path always computed it; ``alpha`` halves the sign inside the add (exact)."""
    lo, hi = code_limits(bits)
    v = x * (2.0 ** fl)
    v.add_(torch.sign(v), alpha=0.5).trunc_()
    return v.clamp_(lo, hi).mul_(2.0 ** -fl)


def wrap(x_int: torch.Tensor, bits: int) -> torch.Tensor:
    """Two's-complement wraparound of integer-valued ``x_int`` to ``bits`` bits, as an adder
    register of that width does on overflow (not saturation)."""
    if not bits:
        return x_int
    span = 2.0 ** bits
    half = 2.0 ** (bits - 1)
    # Only values outside the register change. Adding 2^(bits-1) to every value would lose the
    # low bits of a float32 tensor (24-bit mantissa) for a 32-bit register.
    inside = (x_int >= -half) & (x_int < half)
    if bool(inside.all()):  # the common case: no overflow, nothing to compute
        return x_int
    wrapped = torch.remainder(x_int.double() + half, span) - half  # float64: exact for any register
    return torch.where(inside, x_int, wrapped.to(x_int.dtype))


class _QuantizeSTE(torch.autograd.Function):
    """Forward: fixed-point quantization. Backward: straight-through estimator (identity)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, bits: int, fl: int, exact: bool) -> torch.Tensor:
        return to_integer(x, bits, fl).mul_(2.0 ** -fl) if exact else _fake_quantize(x, bits, fl)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        return grad, None, None, None


def quantize(x: torch.Tensor, bits: int, il: int, exact: bool = True) -> torch.Tensor:
    """Simulated fixed point: ``clamp(round(x*2^fl)*2^-fl, -2^(bw-1)*2^-fl, (2^(bw-1)-1)*2^-fl)``
    with ``fl = bits - il - 1``; ``bits == 0`` returns ``x`` unchanged. Gradient: straight-through.
    ``exact=False`` (training) takes the faster rounding that differs only for |x * 2^fl| equal to
    the largest float below 0.5."""
    if not bits:
        return x
    return _QuantizeSTE.apply(x, int(bits), fractional_length(bits, il), exact)


@dataclass(frozen=True)
class Format:
    """One number format: ``bits`` (0 = float) and integer length ``il``; the fractional length,
    code limits, simulated quantization and integer codes all follow from these two."""
    bits: int
    il: int = 0

    @classmethod
    def covering(cls, bits: int, absmax: float | torch.Tensor) -> Format:
        """The ``bits``-bit format whose integer length just holds ``absmax`` (dynamic fixed
        point picks it from the measured range); ``bits`` 0 is float."""
        return cls(int(bits), integer_length(absmax) if bits else 0)

    @property
    def fl(self) -> int:
        return fractional_length(self.bits, self.il)

    @property
    def limits(self) -> tuple[int, int]:
        return code_limits(self.bits)

    def quantize(self, x: torch.Tensor, exact: bool = True) -> torch.Tensor:
        return quantize(x, self.bits, self.il, exact)

    def codes(self, x: torch.Tensor) -> torch.Tensor:
        return to_integer(x, self.bits, self.fl)
