"""The project uses torch and the standard library through their public interfaces only.

An AST scan of every project .py file fails on: importing an underscore-private module or name of
torch or the standard library (``import torch._C``, ``from torch.nn.modules.conv import _ConvNd``),
an underscore-private attribute reached from such a module (``torch._C``, ``atexit._run_exitfuncs``,
``os._exit``), ``._C`` on anything, ``__wrapped__``, ``inspect.unwrap``, ``sys.meta_path``,
``types.ModuleType`` (a placeholder module) and writes into ``sys.modules``.
Those tie the project to one release of torch or CPython. :data:`ALLOWED` lists the few
protected names that torch's own extension points expect a subclass to call or override.
"""
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIP = {".venv", "data", "saved", ".git", "__pycache__", "node_modules"}
THIRD_PARTY = {"torch", "torchaudio", "torchvision"}
WATCHED = THIRD_PARTY | set(sys.stdlib_module_names)
# protected names torch documents for subclasses (reached as torch.nn.Conv2d._conv_forward,
# the hook its quantized and pruned convolutions override); keep this list short
ALLOWED = {"_conv_forward"}
FORBIDDEN_ANYWHERE = {"_C", "__wrapped__", "meta_path"}
FORBIDDEN_CALLS = {("inspect", "unwrap"), ("types", "ModuleType")}
# files that may put a module into sys.modules: the standard library's own profile module, loaded
# by importlib's documented recipe so that our profile.py script does not shadow it
MODULE_WRITERS = {"utils/stdlib_profile.py"}


def project_files():
    for path in sorted(ROOT.rglob("*.py")):
        if not SKIP.intersection(path.relative_to(ROOT).parts):
            yield path


def _private(part):
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__")) and part not in ALLOWED


def _dotted(node):
    """``a.b.c`` of an attribute chain rooted at a name, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return [node.id] + parts[::-1]
    return None


def _sys_modules(node):
    return _dotted(node) == ["sys", "modules"]


def _module_writes(tree):
    """Lines that put, replace or remove entries of ``sys.modules``."""
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, (ast.Assign, ast.Delete)):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        for target in targets:
            if isinstance(target, ast.Subscript) and _sys_modules(target.value):
                yield node.lineno, "sys.modules[...] written"
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and _sys_modules(node.func.value)
                and node.func.attr in {"update", "setdefault", "pop", "popitem", "clear"}):
            yield node.lineno, f"sys.modules.{node.func.attr}"


def violations(source, filename="<string>", may_write_modules=False):
    """(line, what) for every private use in ``source``."""
    tree = ast.parse(source, filename)
    modules = {}  # local name -> the watched module it is bound to
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in WATCHED:
                    if any(_private(p) for p in alias.name.split(".")):
                        found.append((node.lineno, f"import {alias.name}"))
                    if alias.asname:
                        modules[alias.asname] = alias.name
                    else:
                        modules[alias.name.split(".")[0]] = alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] in WATCHED:
                if any(_private(p) for p in node.module.split(".")):
                    found.append((node.lineno, f"from {node.module} import ..."))
                for alias in node.names:
                    if _private(alias.name):
                        found.append((node.lineno, f"from {node.module} import {alias.name}"))
                    modules[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            if node.attr in FORBIDDEN_ANYWHERE:
                found.append((node.lineno, f".{node.attr}"))
                continue
            dotted = _dotted(node)
            if dotted and dotted[0] in modules:
                full = modules[dotted[0]].split(".") + dotted[1:]
                if _private(node.attr):
                    found.append((node.lineno, ".".join(full)))
                elif tuple(full[-2:]) in FORBIDDEN_CALLS:
                    found.append((node.lineno, ".".join(full)))
        elif isinstance(node, ast.Name) and node.id in ("unwrap",) and modules.get("unwrap") == "inspect.unwrap":
            found.append((node.lineno, "inspect.unwrap"))
    if not may_write_modules:
        found.extend(_module_writes(tree))
    return sorted(set(found))


def test_the_scan_finds_each_kind_of_private_use():
    source = "\n".join([
        "import torch", "import atexit, os, sys, inspect", "import torch._dynamo",
        "from torch._opaque_base import OpaqueBaseMeta", "from torch.nn.modules.conv import _ConvNd",
        "torch._C._set_deterministic_algorithms(True)", "atexit._run_exitfuncs()", "os._exit(0)",
        "sys.meta_path.insert(0, None)", "f = torch.optim.Optimizer.step.__wrapped__",
        "g = inspect.unwrap(torch.optim.Adam.step)", "x = model._C",
        "import types", "sys.modules['torch.export'] = types.ModuleType('torch.export')",
        "sys.modules.update({})", "del sys.modules['torch.export']",
    ])
    assert [line for line, _ in violations(source)] == [3, 4, 5, 6, 6, 7, 8, 9, 10, 11, 12, 14, 14, 15, 16]
    assert [line for line, _ in violations(source, may_write_modules=True)][-2:] == [12, 14]


def test_public_uses_and_the_allowlist_pass():
    source = "\n".join([
        "import torch", "import os", "from torch import nn",
        "torch.use_deterministic_algorithms(True, warn_only=True)", "os.replace('a', 'b')",
        "class C(nn.Conv2d):", "    def forward(self, x):", "        return self._conv_forward(x, self.weight, None)",
        "y = nn.Conv2d._conv_forward", "self._private_of_ours = 1", "torch.__version__",
        "m = sys.modules.get('profile')",
    ])
    assert violations(source) == []


def test_no_private_api_in_the_project():
    found = []
    for path in project_files():
        rel = path.relative_to(ROOT).as_posix()
        for line, what in violations(path.read_text(encoding="utf-8"), rel, rel in MODULE_WRITERS):
            found.append(f"{rel}:{line}: {what}")
    assert found == [], "private APIs of torch or the standard library:\n" + "\n".join(found)


def test_a_private_torch_call_is_reported_with_its_line():
    assert violations("import torch\n\ntorch._C._foo()\n") == [(3, "._C"), (3, "torch._C._foo")]
