"""Moved to ``fixedpoint.layers`` (below both model/ and optimization/); kept importable."""
from fixedpoint.layers import (FIXED_POINT_LAYERS, FixedPointConv2d, FixedPointLinear,  # noqa: F401
                               LayerQuantization, fixed_point_layers)
