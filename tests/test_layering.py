"""The floors of the house: every package imports only packages below it, none imports another in
a loop, and no project import hides inside a function (the usual way to dodge a cycle)."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Lowest first. A module may import its own package and any package listed before it.
LAYERS = (
    "utils",          # atomic writes, errors, checkpoint files, seeding, progress: imports nothing of ours
    "logger",
    "fixedpoint",     # number format, fixed-point layers, the model description (graph)
    "base",
    "model",          # architectures (registry), loss, metrics
    "configuration",  # the config schema (reads the registry for arch.type / arch.args)
    "data_loader",
    "optimization",   # range analysis, quantization and pruning searches, profiling, solutions
    "deploy",         # compaction, integer engine, C and ONNX export
    "trainer",        # the epoch loop, evaluation, finetuning, distributed training
    "parse_config",
    "app",            # script back-ends: training, testing, compression workflow, export, detection, demo
)
SCRIPTS = ("train.py", "test.py", "quantize.py", "prune.py", "profile.py", "export.py", "predict.py")


def _modules():
    """(path, package) of every module of a layer package, and of the scripts (package None)."""
    for layer in LAYERS:
        folder = ROOT / layer
        paths = sorted(folder.rglob("*.py")) if folder.is_dir() else [ROOT / f"{layer}.py"]
        yield from ((path, layer) for path in paths)
    yield from ((ROOT / script, None) for script in SCRIPTS)


def _project(name):
    top = name.split(".")[0]
    return top if top in LAYERS else None


def _imports(tree):
    """(imported project package, node, inside a function?) for every import in ``tree``."""
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            names = []
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                names = [child.module]
            for name in names:
                if _project(name):
                    found.append((_project(name), child, in_function))
            visit(child, nested)
    visit(tree, False)
    return found


def _graph():
    edges, hidden = {}, []
    for path, package in _modules():
        for target, node, in_function in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            if in_function:
                hidden.append(where)
            if package is not None and target != package:
                edges.setdefault(package, {}).setdefault(target, where)
    return edges, hidden


def test_every_module_is_in_a_layer():
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file() or
                (p.is_dir() and any(p.glob("*.py")) and p.name not in ("tests", "bench"))}
    assert packages <= set(LAYERS), f"packages without a layer: {sorted(packages - set(LAYERS))}"


def test_packages_import_only_downwards():
    edges, _ = _graph()
    rank = {layer: i for i, layer in enumerate(LAYERS)}
    upward = [f"{src} -> {dst} ({where})" for src, targets in edges.items() for dst, where in targets.items()
              if rank[dst] > rank[src]]
    assert not upward, "imports against the layering:\n" + "\n".join(upward)


def test_no_package_imports_another_in_a_loop():
    edges, _ = _graph()

    def reaches(start, goal, seen):
        for nxt in edges.get(start, {}):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False
    loops = [package for package in edges if reaches(package, package, {package})]
    assert not loops, f"packages on an import loop: {loops}"


def test_no_project_import_hides_in_a_function():
    _, hidden = _graph()
    assert not hidden, "project imports inside functions:\n" + "\n".join(hidden)


def test_the_checks_see_a_violation():
    """The parser finds a function-level and an upward import in a sample, so the tests above can fail."""
    sample = ast.parse("import torch\nfrom app.restore import x\ndef f():\n    from model import registry\n")
    found = [(target, in_function) for target, _, in_function in _imports(sample)]
    assert found == [("app", False), ("model", True)]
