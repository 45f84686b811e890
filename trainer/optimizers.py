"""torch.optim's optimizers, as the config names them, without importing ``torch._dynamo``.

Every torch optimizer imports the compiler's front end, ``torch._dynamo`` (with sympy: 1.3-1.5 s
on 2 quiet cores, 3-4 s on a loaded one), the first time it adds a parameter group, zeroes
gradients, steps or saves its state: those methods are wrapped so that ``torch.compile`` does not
trace them. Nothing here is compiled, so :data:`OPTIMIZERS` hands out subclasses that call the
same methods without that wrapper: the same update, the same state dict (a checkpoint loads into
either), one import fewer per train.py run. The wrappers removed are ``functools.wraps`` wrappers,
reached through ``__wrapped__``; tests/test_optimizers.py checks the updates are bit-identical and
that training leaves ``torch._dynamo`` unimported.
"""
import functools
import inspect

import torch
from torch.optim import Optimizer


class _WithoutDynamo:
    """Mixin before a torch optimizer class: its dynamo-wrapped methods, unwrapped."""

    def add_param_group(self, param_group):
        return Optimizer.add_param_group.__wrapped__(self, param_group)

    def zero_grad(self, set_to_none=True):
        return Optimizer.zero_grad.__wrapped__(self, set_to_none)

    def state_dict(self):
        return Optimizer.state_dict.__wrapped__(self)

    def load_state_dict(self, state_dict):
        return Optimizer.load_state_dict.__wrapped__(self, state_dict)

    _torch_step = None   # the torch class's step, unwrapped (set by optimizer_class)

    def step(self, closure=None):
        """The torch class's own step in the grad mode its wrapper sets (no graph breaks)."""
        previous = torch.is_grad_enabled()
        try:
            torch.set_grad_enabled(bool(self.defaults.get("differentiable", False)))
            return self._torch_step(closure)
        finally:
            torch.set_grad_enabled(previous)


UNWRAPPED = ("add_param_group", "zero_grad", "state_dict", "load_state_dict")


@functools.lru_cache(maxsize=None)
def optimizer_class(name):
    """The dynamo-free subclass of ``torch.optim.<name>`` (None when torch has no such optimizer);
    an optimizer that defines one of :data:`UNWRAPPED` itself is returned as torch has it (the
    mixin would bypass its own version)."""
    base = getattr(torch.optim, name, None)
    if not (isinstance(base, type) and issubclass(base, Optimizer)) or base is Optimizer:
        return None
    if any(method in vars(c) for c in base.__mro__[:base.__mro__.index(Optimizer)] for method in UNWRAPPED):
        return base
    step = inspect.unwrap(next(vars(c)["step"] for c in base.__mro__ if "step" in vars(c)))
    return type(name, (_WithoutDynamo, base), {"__module__": __name__, "__doc__": base.__doc__, "_torch_step": step})


class _TorchOptim:
    """``torch.optim`` as ``ConfigParser.init_obj`` looks names up in it."""
    __name__ = "torch.optim"

    def __getattr__(self, name):
        cls = optimizer_class(name)
        if cls is None:
            raise AttributeError(name)
        return cls


OPTIMIZERS = _TorchOptim()
