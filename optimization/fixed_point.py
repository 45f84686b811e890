"""Moved to ``fixedpoint.fixed_point`` (below both model/ and optimization/); kept importable."""
from fixedpoint.fixed_point import (FLOAT, fractional_length, integer_length, quantize,  # noqa: F401
                                    round_half_away, to_integer, wrap)
