"""A property-based fuzz of the config loader (hypothesis): the shipped config with values
replaced at random paths (wrong types, edges, huge, negative, NaN, infinities, deep nesting,
control characters), and YAML text with anchors, aliases, merge keys, duplicate keys and nesting,
read from a file by the path train.py takes (``ConfigParser.from_args``) in this process. Every
example must end in success or a one-line UserError; anything else (a traceback-worthy
exception, a multi-line message) fails. Derandomized, so a failure reproduces on every run;
bounded to about a minute (max_examples below)."""
import copy
import io
import math
import os
import resource
import signal
import tempfile
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from types import SimpleNamespace

import pytest
import torch
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from app.restore import restore_model
from conftest import ROOT
from configuration.schema import validate_stored_loader
from fixedpoint.layers import fixed_point_layers
from parse_config import ConfigParser
from script_runs import call_main
from tiny import quantized_tiny_run
from utils import yaml_reader
from utils.checkpoint_checks import validate_checkpoint
from utils.errors import UserError

BASE = yaml.safe_load((ROOT / "config_lenet5_keywords.yml").read_text())
FUZZ = settings(derandomize=True, database=None, deadline=None, max_examples=400,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _paths(node, prefix=()):
    """Every key path of the config (mappings only), leaves and sections."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield prefix + (key,)
            yield from _paths(value, prefix + (key,))


PATHS = sorted(_paths(BASE), key=repr)


def _mutate(data, changes):
    """``data`` (nested mappings) with each (key path, value) of ``changes`` set, where the path
    leads through mappings (a change under a replaced leaf is dropped); returns data. Values are
    copied in: a strategy's sampled mapping is one shared object, and a later change must not
    write into it (nor make it contain itself)."""
    for path, value in changes:
        node = data
        for key in path[:-1]:
            if not isinstance(node.get(key), dict):
                break
            node = node[key]
        else:
            node[path[-1]] = copy.deepcopy(value)
    return data

EDGES = st.sampled_from([0, 1, -1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 63, 2 ** 64, 10 ** 30, -10 ** 30,
                         0.5, -0.0, 1e-300, 1e300, math.inf, -math.inf, math.nan, True, False, None,
                         "", ".", "..", "../../x", "/tmp", "a/b", "x" * 300, "new\nline", "\x1b[31mred",
                         "caf\udce9", [], {}, [2, 0.999], [math.nan, 1], {"type": "Adam"},
                         "LBFGS", "ReduceLROnPlateau", "SGD", "StepLR"])
LEAVES = st.one_of(EDGES, st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                   st.text(max_size=20), st.booleans(), st.none())
VALUES = st.recursive(LEAVES, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=12)


def _load(text):
    """The config of YAML ``text`` as train.py builds it (no folder is made); None on a UserError,
    whose message must be one printable line."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "config.yml")
        with open(path, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(text)
        args = SimpleNamespace(config=path, resume=None, device=None)
        try:
            config = ConfigParser.from_args(args, make_dirs=False).config
            event("loaded")
            return config
        except UserError as e:
            event("refused: " + str(e).split(" ")[0])
            message = str(e)
            assert message and "\n" not in message and "\r" not in message and message.isprintable(), message
            return None


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(PATHS), VALUES), min_size=1, max_size=3))
def test_mutated_configs_load_or_fail_in_one_line(changes):
    _load(yaml_reader.dumps(_mutate(copy.deepcopy(BASE), changes), allow_unicode=False))


SNIPPETS = st.sampled_from([
    "a: &a [1, 2, 3]\nb: *a\n", "x: &x {k: 1}\ny:\n  <<: *x\n", "name: a\nname: b\n", "[" * 50 + "]" * 50,
    "seed: " + "9" * 40 + "\n", "trainer: {epochs: *missing}\n", "? [1, 2]\n: 3\n", "!!python/object:os.system {}\n",
    "trainer: !!binary aGVsbG8=\n", "\t- bad indent\n", "%YAML 9.9\n---\na: 1\n", "name: \"\\x1b[2J\"\n",
    "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
    "e: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n",
])


@FUZZ
@given(st.lists(SNIPPETS, min_size=1, max_size=3), st.integers(0, 3))
def test_hostile_yaml_shapes_load_or_fail_in_one_line(snippets, where):
    base = yaml_reader.dumps(BASE).splitlines(keepends=True)
    cut = len(base) * where // 3
    text = "".join(base[:cut]) + "".join(snippets) + "".join(base[cut:])
    _load(text)


def _one_line_or_none(call):
    try:
        call()
        event("accepted")
    except UserError as e:
        event("refused")
        assert "\n" not in str(e) and str(e).isprintable(), str(e)


LOADER_ARGS = BASE["data_loader"]["args"]


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(sorted(_paths(LOADER_ARGS), key=repr)), VALUES), min_size=1, max_size=3))
def test_a_checkpoints_mutated_loader_args_pass_or_fail_in_one_line(changes):
    args = _mutate(copy.deepcopy(LOADER_ARGS), changes)
    _one_line_or_none(lambda: validate_stored_loader("SpeechCommandsDataLoader", args, "the checkpoint"))


CHECKPOINT_FIELDS = ("arch", "arch_args", "state_dict", "config", "features", "normalization", "epoch",
                     "not_improved", "monitor_best", "keywords", "class_names", "solutions", "rng_state")


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(CHECKPOINT_FIELDS), VALUES), min_size=1, max_size=3))
def test_a_checkpoints_mutated_fields_pass_or_fail_in_one_line(changes):
    ckpt = {"arch": "KeywordLeNet5Clone", "arch_args": {"num_classes": 4}, "state_dict": {"w": torch.zeros(2)},
            "config": copy.deepcopy(BASE), "features": dict(LOADER_ARGS.get("features") or {}),
            "normalization": {"mean": torch.zeros(13), "std": torch.ones(13)}, "keywords": ["one", "two", "three"]}
    for key, value in changes:
        ckpt[key] = value
    _one_line_or_none(lambda: validate_checkpoint(ckpt, "forged.pth"))


# ---- quantization / pruning YAML and the scripts' flags, under memory and time limits ---------------

MEMORY_HEADROOM = 2 * 2 ** 30   # bytes of address space an example may add to what this process maps
TIME_LIMIT = 30                 # seconds an example may take (a loaded 2-core machine included)
LIMITED = settings(FUZZ, max_examples=100,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                          HealthCheck.function_scoped_fixture])


class Hang(BaseException):
    """An example that ran past TIME_LIMIT (a BaseException: no ``except Exception`` swallows it)."""


def _hang(signum, frame):
    raise Hang(f"the example ran past {TIME_LIMIT} s")


@contextmanager
def limits(seconds=TIME_LIMIT):
    """The address space capped (resource.setrlimit RLIMIT_AS) at what this process maps now plus
    MEMORY_HEADROOM, so an unbounded allocation is a MemoryError that fails the example, and an
    alarm that raises Hang after ``seconds``; both undone afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as f:
        mapped = int(f.read().split()[0]) * resource.getpagesize()
    cap = mapped + MEMORY_HEADROOM if hard == resource.RLIM_INFINITY else min(mapped + MEMORY_HEADROOM, hard)
    previous = signal.signal(signal.SIGALRM, _hang)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A 2-epoch run on the tiny corpus with its quantization.yml, and its layer names."""
    tmp = tmp_path_factory.mktemp("fuzz-run")
    corpus, _, run_dir = quantized_tiny_run(tmp)
    model, _ = restore_model(run_dir / "model_best.pth", use_stored=False, announce=lambda *a: None)
    return SimpleNamespace(tmp=tmp, corpus=corpus, run_dir=run_dir, ckpt=run_dir / "model_best.pth",
                           q=yaml.safe_load((run_dir / "quantization.yml").read_text()),
                           layers=sorted(fixed_point_layers(model)),
                           clip=sorted((corpus / "one").glob("*.wav"))[0])


SOLUTION_VALUES = st.one_of(VALUES, st.lists(st.integers(-3, 200), max_size=8),
                            st.sampled_from([list(range(200)), [0] * 1000, [10 ** 5000 // 10 ** 4990]]))


@LIMITED
@given(data=st.data())
def test_mutated_quantization_and_pruning_files_apply_or_fail_in_one_line(tiny_run, data, tmp_path_factory):
    """A quantization.yml (the run's, values replaced at random paths) and a pruning.yml (random
    layers, indices, shapes), written as YAML, perhaps with hostile YAML spliced in, then applied
    as every script applies them (restore_model) and run on one input."""
    q_paths = sorted(_paths(tiny_run.q), key=repr)
    q = _mutate(copy.deepcopy(tiny_run.q), data.draw(st.lists(st.tuples(st.sampled_from(q_paths), SOLUTION_VALUES),
                                                              max_size=3)))
    names = st.one_of(st.sampled_from(tiny_run.layers), st.text(max_size=8))
    p = {"pruned_filters": data.draw(st.dictionaries(names, SOLUTION_VALUES, max_size=3))}
    q_text, p_text = yaml_reader.dumps(q, allow_unicode=False), yaml_reader.dumps(p, allow_unicode=False)
    if data.draw(st.booleans()):
        q_text += data.draw(SNIPPETS)
    if data.draw(st.booleans()):
        p_text = data.draw(SNIPPETS) + p_text
    folder = tmp_path_factory.mktemp("solutions")
    (folder / "quantization.yml").write_text(q_text, encoding="utf-8", errors="surrogateescape")
    (folder / "pruning.yml").write_text(p_text, encoding="utf-8", errors="surrogateescape")
    which = data.draw(st.sampled_from(["q", "p", "both"]))

    def apply():
        model, _ = restore_model(tiny_run.ckpt, None if which == "p" else folder / "quantization.yml",
                                 None if which == "q" else folder / "pruning.yml", use_stored=False,
                                 announce=lambda *a: None)
        with torch.no_grad():
            assert torch.isfinite(model(torch.zeros(1, *model.input_shape))).all()
    with limits():
        _one_line_or_none(apply)


FLAG_VALUES = st.one_of(st.sampled_from(["nan", "inf", "-inf", "-1", "0", "1e12", "1e-300", "1e308", "abc", "",
                                         "0x10", "1_000", " 5", "--", "-0", "1" * 400, "\x1b[2J", "2**64"]),
                        st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers().map(str))
PREDICT_FLAGS = ("--hop-ms", "--smooth-ms", "--threshold", "--refractory-ms")


def _run_main(script, argv, cwd=ROOT):
    """``script``'s main() in this process with ``argv``, in folder ``cwd``: (exit status, stdout,
    stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        status = call_main(script, argv, cwd, run_name="fuzz_case")
    return status, out.getvalue(), err.getvalue()


def _assert_exit_0_or_one_line(status, out, err):
    event(f"exit {status}")
    assert status in (0, 1), (status, err)
    assert "Traceback" not in err, err
    if status == 1:
        assert err.count("\n") == 1 and err.startswith("error: ") and err[:-1].isprintable(), err
    else:
        assert out.strip(), err


@settings(LIMITED, max_examples=40)
@given(st.lists(st.tuples(st.sampled_from(PREDICT_FLAGS), FLAG_VALUES), min_size=1, max_size=4))
def test_fuzzed_predict_flags_end_in_success_or_one_line(tiny_run, flags):
    """predict.py with its numeric flags given hostile text: exit 0, or 1 with one ``error:`` line
    (argparse's own errors included), never a traceback, a hang or an unbounded allocation."""
    argv = ["-r", tiny_run.ckpt, tiny_run.clip] + [part for flag, value in flags for part in (f"{flag}={value}",)]
    before = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in tiny_run.run_dir.iterdir())
    with limits():
        status, out, err = _run_main("predict.py", argv)
    _assert_exit_0_or_one_line(status, out, err)
    assert sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in tiny_run.run_dir.iterdir()) == before


@settings(LIMITED, max_examples=25)
@given(data=st.data())
def test_fuzzed_test_flags_end_in_success_or_one_line(tiny_run, data, tmp_path_factory):
    """test.py with hostile output folders and corpora (-o, --data-dir: a FIFO, a device, /sys, /proc,
    a file, a missing path, escapes, the corpus, a folder), --all and --no-stored, run in a
    scratch folder: exit 0 or 1 with one ``error:`` line; the run's files unchanged."""
    here = tmp_path_factory.mktemp("test-flags")
    (here / "file").write_text("x")
    os.mkfifo(here / "fifo")
    paths = st.sampled_from([str(here), str(here / "file"), str(here / "fifo"), str(here / "missing"),
                             str(here / "file" / "under"), "/dev/null", "/sys", "/proc/self",
                             str(here / "\x1b[2J"), str(tiny_run.corpus), str(tiny_run.run_dir / "model_best.pth")])
    argv = ["-r", tiny_run.ckpt]
    for flag in data.draw(st.lists(st.sampled_from(["-o", "--data-dir", "--all", "--no-stored"]), max_size=3)):
        argv += [flag] if flag.startswith("--a") or flag == "--no-stored" else [flag, data.draw(paths)]
    before = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in tiny_run.run_dir.iterdir())
    with limits():
        status, out, err = _run_main("test.py", argv, cwd=here)
    _assert_exit_0_or_one_line(status, out, err)
    after = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in tiny_run.run_dir.iterdir())
    assert [f for f in after if "-test-" not in f[0]] == [f for f in before if "-test-" not in f[0]]
