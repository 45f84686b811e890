"""A property-based fuzz of the config loader (hypothesis): the shipped config with values
replaced at random paths (wrong types, edges, huge, negative, NaN, infinities, deep nesting,
control characters), and YAML text with anchors, aliases, merge keys, duplicate keys and nesting,
read from a file by the path train.py takes (``ConfigParser.from_args``) in this process. Every
example must end in success or a one-line UserError; anything else (a traceback-worthy
exception, a multi-line message) fails. Derandomized, so a failure reproduces on every run;
bounded to about a minute (max_examples below)."""
import copy
import math
import os
import tempfile
from types import SimpleNamespace

import torch
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from conftest import ROOT
from configuration.schema import validate_stored_loader
from parse_config import ConfigParser
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
    cfg = copy.deepcopy(BASE)
    for path, value in changes:
        node = cfg
        for key in path[:-1]:
            if not isinstance(node.get(key), dict):
                break
            node = node[key]
        else:
            node[path[-1]] = value
    _load(yaml_reader.dumps(cfg, allow_unicode=False))


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
    args = copy.deepcopy(LOADER_ARGS)
    for path, value in changes:
        node = args
        for key in path[:-1]:
            if not isinstance(node.get(key), dict):
                break
            node = node[key]
        else:
            node[path[-1]] = value
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
