"""Import torch without the modules only its compiler, export and meta tensors use.

``import torch`` spends 0.3-0.6 s of its 1.2-2 s (2 cores) on two modules that eager CPU code
never uses: ``torch._meta_registrations`` (Python kernels for the Meta device, which the fake
tensors of ``torch.compile`` and ``torch.export`` run on) and ``torch.export``. The scripts
(train.py, test.py, profile.py, quantize.py, prune.py, predict.py) import torch through
:func:`import_torch_without_compiler`, which puts placeholders for the two where torch's
``__init__`` imports them, and loads them as soon as anything could need them:

- the first import of any other torch module after start-up (dynamo, inductor, the ONNX
  exporter, fake tensors, ``torch.export``, ...; all but :data:`UNRELATED`) first loads the meta
  registrations, so torch's modules are imported in torch's own order (several import each other
  in a cycle that only works in that order);
- using an attribute of a placeholder loads it (``torch.export.export``,
  ``torch._meta_registrations.activate_meta``).

``torch.Generator`` gets its metaclass as ``torch._prims.rng_prims`` gives it (without it creating
a generator fails); the rest of ``torch._prims`` (0.17 s of registering primitives) comes with the
meta registrations. What is left out until then is only the Meta-device
registration: CPU kernels, and so every number the scripts compute, are the same with and
without it (tests/test_torch_startup.py).
"""
import importlib
import importlib.machinery
import sys
import types

META = "torch._meta_registrations"
EXPORT = "torch.export"
# torch modules imported after start-up that never touch meta tensors (torch.load and an
# optimizer's first step import them)
UNRELATED = ("torch.utils.serialization", "torch.utils.serialization.config", "torch.profiler._cupti_monitor")


class _Deferred(types.ModuleType):
    """Stands in for a torch module until one of its attributes is used."""

    def __getattr__(self, attr):
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)  # the import system's probes (__path__, ...) must not load it
        if self.__name__ == META:
            _load_meta()
            return getattr(self, attr)
        module = importlib.import_module(self.__name__)  # the placeholder left sys.modules: real import
        setattr(sys.modules["torch"], self.__name__.rpartition(".")[2], module)
        return getattr(module, attr)


_state = {"meta": "absent"}   # "deferred" -> "loading" -> "loaded"


def _load_meta():
    """Execute the real meta registrations into their placeholder (every reference stays valid)."""
    if _state["meta"] != "deferred":
        return
    _state["meta"] = "loading"
    module = sys.modules[META]
    spec = importlib.machinery.PathFinder.find_spec(META, sys.modules["torch"].__path__)
    module.__class__ = types.ModuleType
    module.__spec__, module.__loader__, module.__file__ = spec, spec.loader, spec.origin
    try:
        spec.loader.exec_module(module)
    finally:
        _state["meta"] = "loaded"


class _Existing:
    """Hands the import system a module that loading the meta registrations already imported,
    then gives it back its own spec and loader."""

    def __init__(self, module):
        self.module, self.spec = module, module.__spec__

    def create_module(self, spec):
        return self.module

    def exec_module(self, module):
        module.__spec__, module.__loader__ = self.spec, self.spec.loader


class _MetaFirst:
    """Loads the meta registrations before the first torch module imported after start-up."""

    def find_spec(self, name, path, target=None):
        if _state["meta"] != "deferred" or not name.startswith("torch.") or name in UNRELATED:
            return None
        _load_meta()
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        if name not in sys.modules:
            return None  # imported now by the next finder, as usual
        module = sys.modules.pop(name)  # part of what the meta registrations import: no second copy
        return importlib.machinery.ModuleSpec(name, _Existing(module), origin=module.__spec__.origin,
                                              is_package=hasattr(module, "__path__"))


def import_torch_without_compiler():
    """Import torch (if not imported yet) with the two modules deferred; returns the torch module."""
    if "torch" in sys.modules:
        return sys.modules["torch"]
    placeholders = {EXPORT: _Deferred(EXPORT), META: _Deferred(META)}
    sys.modules.update(placeholders)
    try:
        import torch
    except BaseException:
        for name, placeholder in placeholders.items():
            if sys.modules.get(name) is placeholder:
                del sys.modules[name]
        raise
    from torch._opaque_base import OpaqueBaseMeta
    torch._C._set_generator_metaclass(OpaqueBaseMeta)  # what torch._prims.rng_prims does for eager code
    if sys.modules.get(EXPORT) is placeholders[EXPORT]:
        del sys.modules[EXPORT]   # `import torch.export` imports the real one from now on
    _state["meta"] = "deferred"
    sys.meta_path.insert(0, _MetaFirst())
    return torch


def deferred_modules():
    """Which of the two modules are not loaded yet (what the tests check)."""
    out = [] if EXPORT in sys.modules else [EXPORT]
    return out + ([META] if isinstance(sys.modules.get(META), _Deferred) else [])
