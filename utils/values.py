"""Type tests of values read from YAML or a checkpoint, where ``True`` is an ``int`` to Python but
never a count, a width or a rate to a user."""
import math


def is_int(value: object) -> bool:
    """An integer that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """An int or a float that is not a bool (may be nan or infinite)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_finite_number(value: object) -> bool:
    """A number that is neither nan nor infinite."""
    return is_number(value) and math.isfinite(value)
