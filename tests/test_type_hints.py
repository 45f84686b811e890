"""Every public function and method of the packages and scripts carries type hints: each
parameter (but self and cls) and the return value. Hints are the signature a newcomer reads first
and what an editor checks calls against."""
import ast

from conftest import ROOT

PACKAGES = ("app", "base", "configuration", "data_loader", "deploy", "fixedpoint", "logger", "model",
            "optimization", "trainer", "utils")


def sources():
    yield from sorted(ROOT.glob("*.py"))
    for package in PACKAGES:
        yield from sorted((ROOT / package).rglob("*.py"))


def unannotated(path, root=ROOT):
    """``file:line name`` of each public function in ``path`` missing a hint."""
    missing = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or node.name.startswith("_"):
            continue
        args = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
        args += [a for a in (node.args.vararg, node.args.kwarg) if a is not None]
        if node.returns is None or any(a.annotation is None for a in args if a.arg not in ("self", "cls")):
            missing.append(f"{path.relative_to(root)}:{node.lineno} {node.name}")
    return missing


def test_the_checker_sees_every_kind_of_missing_hint(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def whole(a: int, *b: int, c: int = 1, **d: int) -> int: ...\n"
                     "def no_return(a: int): ...\n"
                     "def bare_arg(a) -> int: ...\n"
                     "def bare_star(*a) -> None: ...\n"
                     "def bare_kwonly(*, a) -> None: ...\n"
                     "def _private(a): ...\n"
                     "class C:\n"
                     "    def method(self, a: int) -> int: ...\n"
                     "    def bare(self, a): ...\n"
                     "    @classmethod\n"
                     "    def make(cls) -> 'C': ...\n")
    names = [m.split(" ")[1] for m in unannotated(probe, tmp_path)]
    assert names == ["no_return", "bare_arg", "bare_star", "bare_kwonly", "bare"]


def test_every_public_function_has_type_hints():
    missing = [m for path in sources() for m in unannotated(path)]
    assert not missing, f"{len(missing)} public functions without full type hints: {missing[:20]}"
