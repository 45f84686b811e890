"""Keep the project's ``profile.py`` script from shadowing Python's standard ``profile`` module.

Python puts a script's folder first on ``sys.path``, so ``import profile`` anywhere (cProfile
does it, and torch imports cProfile, e.g. when an optimizer is created) would find our
``profile.py`` instead of the standard library's and break. Importing this module first loads the
real one from the standard library's folder and registers it under its name.
"""
import importlib.util
import os
import sys
import sysconfig


def _load_stdlib_profile():
    path = os.path.join(sysconfig.get_paths()["stdlib"], "profile.py")
    loaded = sys.modules.get("profile")
    if loaded is not None and os.path.abspath(getattr(loaded, "__file__", "") or "") == path:
        return loaded
    spec = importlib.util.spec_from_file_location("profile", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["profile"] = module
    spec.loader.exec_module(module)
    return module


_load_stdlib_profile()
