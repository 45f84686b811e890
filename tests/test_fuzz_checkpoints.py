"""A property-based fuzz of received checkpoints through the scripts (hypothesis): a real
checkpoint of a tiny run, mutated (bytes flipped at random offsets, truncated, stored config and
feature values of wrong types or huge, solutions of the wrong shape, state-dict tensors of the
wrong dtype or shape, sparse, non-finite or huge, keywords and class names that disagree with the
model), then given to test.py, predict.py, quantize.py, prune.py, profile.py or export.py as a
subprocess under resource limits (tests/script_runs.py). Each example must end in exit 0 with
output, or exit 1 with one ``error:`` line and no traceback; the checkpoint and the run's files
are unchanged, no temporary file is left, and a refused run writes nothing. Derandomized, without
shrinking; ``KWS_FUZZ_SCALE=N`` runs N times the examples."""
import copy
import math
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from script_runs import assert_success_or_one_line, run_limited
from tiny import assert_unchanged, quantized_tiny_run, snapshot

SCALE = int(os.environ.get("KWS_FUZZ_SCALE", "1"))
RUNS = settings(derandomize=True, database=None, deadline=None, phases=(Phase.explicit, Phase.generate),
                suppress_health_check=list(HealthCheck))
SCRIPTS = ("test.py", "predict.py", "quantize.py", "prune.py", "profile.py", "export.py")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 2-epoch run on the tiny corpus with its quantization.yml, and the checkpoint as a dict."""
    tmp = tmp_path_factory.mktemp("fuzz-checkpoints")
    corpus, _, run_dir = quantized_tiny_run(tmp)
    ckpt = run_dir / "model_best.pth"
    return SimpleNamespace(tmp=tmp, corpus=corpus, run_dir=run_dir, ckpt=ckpt, data=ckpt.read_bytes(),
                           dict=torch.load(ckpt, weights_only=True),
                           q_text=(run_dir / "quantization.yml").read_text(),
                           clip=sorted((corpus / "one").glob("*.wav"))[0])


def _tensor(kind, like):
    """A replacement for state-dict tensor ``like`` of ``kind`` (``like`` itself when an earlier
    change made it something else than a tensor)."""
    if not isinstance(like, torch.Tensor):
        return like
    return {"float64": lambda: like.double(), "int": lambda: like.to(torch.int64),
            "half": lambda: like.half(), "bool": lambda: like > 0,
            "transposed": lambda: like.reshape(-1).flip(0).reshape(like.shape[::-1]) if like.dim() > 1 else like[:-1],
            "flat": lambda: like.reshape(-1), "empty": lambda: like[:0], "scalar": lambda: like.reshape(-1)[0],
            "sparse": lambda: like.to_sparse(), "nan": lambda: torch.full_like(like, math.nan),
            "inf": lambda: torch.full_like(like, -math.inf), "huge": lambda: torch.full_like(like, 9e9),
            "huger": lambda: torch.full_like(like, 3e38), "denormal": lambda: torch.full_like(like, 1e-44),
            "complex": lambda: like.to(torch.complex64), "list": lambda: like.tolist()}[kind]()


TENSOR_KINDS = ("float64", "int", "half", "bool", "transposed", "flat", "empty", "scalar", "sparse", "nan", "inf",
                "huge", "huger", "denormal", "complex", "list")
HOSTILE = st.sampled_from([None, 0, -1, 2 ** 63, 10 ** 30, 1e300, math.nan, math.inf, "", "x", [], {}, [1, 2],
                           {"a": 1}, True, "\x1b[2J", "caf\udce9", ["one"] * 300, list(range(100))])

SOLUTION_TEXTS = [
    lambda r: {"quantization": r.q_text},   # a good one, stored
    lambda r: {"quantization": r.q_text.replace("bits_weights: 8", "bits_weights: 64", 1)},
    lambda r: {"quantization": r.q_text.replace("conv1:", "conv9:")},
    lambda r: {"pruning": "pruned_filters: {conv1: [0, 1, 2, 3, 4, 5, 6, 7]}\n"},
    lambda r: {"pruning": "pruned_filters: {fc3: [" + ", ".join(map(str, range(64))) + "]}\n"},
    lambda r: {"pruning": "pruned_filters: {conv2: [999]}\n"},
    lambda r: {"pruning": "pruned_filters: [1, 2]\n"},
    lambda r: {"quantization": {"layers": {}}},
    lambda r: {"quantization": "[" * 40 + "]" * 40},
    lambda r: {"pruning": "a: &a [x, x, x, x, x, x, x, x]\nb: [*a, *a, *a, *a, *a, *a, *a, *a]\n" * 3},
    lambda r: ["quantization"],
    lambda r: "pruned_filters: {}",
]


def _field_mutation(data, run):
    """One change to the checkpoint dict, drawn; returns (description, function of the dict)."""
    kind = data.draw(st.sampled_from(["tensor", "config", "features", "solutions", "names", "field", "normalization"]))
    if kind == "tensor":
        key = data.draw(st.sampled_from(sorted(run.dict["state_dict"]) + ["every tensor"]))
        how = data.draw(st.sampled_from(TENSOR_KINDS))

        def set_tensors(c):
            for name in (c["state_dict"] if key == "every tensor" else [key]):
                c["state_dict"][name] = _tensor(how, c["state_dict"][name])
        return f"state_dict[{key}] {how}", set_tensors
    if kind == "config":
        path = data.draw(st.sampled_from([("data_loader", "args", "eval_batch_size"), ("data_loader", "args", "batch_size"),
                                          ("data_loader", "args", "background_noise", "test"),
                                          ("data_loader", "args", "augment"), ("data_loader", "args", "keywords"),
                                          ("data_loader", "args", "data_dir"), ("data_loader", "type"),
                                          ("data_loader", "args", "features", "n_fft"), ("optimization", "quantization"),
                                          ("optimization",), ("detector",), ("arch",), ("seed",), ("name",)]))
        value = data.draw(HOSTILE)

        def set_config(c):
            node = c["config"]
            for key in path[:-1]:
                node = node.setdefault(key, {}) if isinstance(node.get(key), dict) else {}
            node[path[-1]] = copy.deepcopy(value)
        return f"config {path} = {value!r}", set_config
    if kind == "features":
        key = data.draw(st.sampled_from(sorted(run.dict["features"]) + ["frontend"]))
        value = data.draw(st.one_of(HOSTILE, st.sampled_from([1, 16, 511, 513, 10 ** 7, 2 ** 40, 0.5])))
        return f"features[{key}] = {value!r}", lambda c: c["features"].__setitem__(key, value)
    if kind == "solutions":
        make = data.draw(st.sampled_from(SOLUTION_TEXTS))
        value = make(run)
        return f"solutions = {str(value)[:200]!r}", lambda c: c.__setitem__("solutions", value)
    if kind == "names":
        key = data.draw(st.sampled_from(["keywords", "class_names"]))
        value = data.draw(st.one_of(HOSTILE, st.sampled_from([["one", "two"], ["one", "two", "three", "four"],
                                                             ["unknown", "one", "two", "three"], ["a", "a", "b", "c"],
                                                             ["one", "two", "\n"], ["x" * 5000] * 3])))
        return f"{key} = {str(value)[:200]!r}", lambda c: c.__setitem__(key, value)
    if kind == "normalization":
        key = data.draw(st.sampled_from(["mean", "std"]))
        how = data.draw(st.sampled_from(["nan", "empty", "huge", "int", "list", "zero", "flat2"]))
        values = {"zero": lambda t: torch.zeros_like(t), "flat2": lambda t: torch.ones(2)}

        def set_normalization(c):
            t = c["normalization"][key]
            c["normalization"][key] = values[how](t) if how in values else _tensor(how, t)
        return f"normalization[{key}] {how}", set_normalization
    key = data.draw(st.sampled_from(["arch", "arch_args", "epoch", "detector", "state_dict", "normalization",
                                     "features", "config", "monitor_best"]))
    value = data.draw(HOSTILE)
    return f"{key} = {value!r}", lambda c: c.__setitem__(key, value)


def _mutated_checkpoint(data, run, folder):
    """The run's checkpoint, mutated as a file (bytes flipped, truncated) or as a dict (one to
    three field changes, saved with torch.save), in ``folder``: (path, description)."""
    path = folder / "received.pth"
    how = data.draw(st.sampled_from(["flip", "truncate", "fields", "fields"]), label="mutation")
    raw = bytearray(run.data)
    if how == "flip":
        offsets = data.draw(st.lists(st.integers(0, len(raw) - 1), min_size=1, max_size=4), label="offsets")
        for offset in offsets:
            raw[offset] ^= data.draw(st.integers(1, 255), label="xor")
        path.write_bytes(bytes(raw))
        return path, f"bytes flipped at {offsets}"
    if how == "truncate":
        size = data.draw(st.integers(0, len(raw) - 1), label="size")
        path.write_bytes(bytes(raw[:size]))
        return path, f"truncated to {size} bytes"
    ckpt = copy.deepcopy(run.dict)
    changes = [_field_mutation(data, run) for _ in range(data.draw(st.integers(1, 3), label="changes"))]
    for _, change in changes:
        change(ckpt)
    torch.save(ckpt, path)
    return path, "; ".join(text for text, _ in changes)


@settings(RUNS, max_examples=16 * SCALE)
@given(data=st.data())
def test_mutated_checkpoints_through_the_scripts_end_in_success_or_one_line(run, tmp_path_factory, data):
    folder, out = tmp_path_factory.mktemp("received"), tmp_path_factory.mktemp("out")
    ckpt, what = _mutated_checkpoint(data, run, folder)
    script = data.draw(st.sampled_from(SCRIPTS), label="script")
    args = {"test.py": ["-r", ckpt, "-o", out], "predict.py": ["-r", ckpt, run.clip],
            "quantize.py": ["-r", ckpt, "-o", out / "q.yml"], "prune.py": ["-r", ckpt, "-o", out / "p.yml"],
            "profile.py": ["-r", ckpt], "export.py": ["-r", ckpt, "-o", out / "bundle"]}[script]
    if script in ("test.py", "profile.py", "export.py") and data.draw(st.booleans(), label="-q"):
        args += ["-q", run.run_dir / "quantization.yml"]
    before = snapshot(run.run_dir, folder, run.corpus)
    proc = run_limited(script, args)
    what = f"{script} {args}: {what}"
    event(f"{script} exit {proc.returncode}")
    assert_success_or_one_line(proc, what)
    after = snapshot(run.run_dir, folder, run.corpus)
    assert_unchanged(before, after)
    new = [p for p in after if p not in before]
    assert all(p.parent == folder and p.name.startswith(ckpt.stem + "-test-") for p in new) \
        or not new, (what, new)   # test.py -o writes to out; nothing lands beside the checkpoint
    assert not [p for p in Path(folder).rglob(".*.tmp")] + [p for p in out.rglob(".*.tmp")], what
    if proc.returncode == 1:
        assert not [p for p in out.rglob("*") if p.is_file()], what


def _training_state_mutation(data, run):
    """One change to what a resumed or finetuned run reads from a received checkpoint: the float
    weights and rate a finetuning starts from, the EMA and RNG state, the optimizer and scheduler
    state, the stored rate and lr_factor; (description, function of the dict)."""
    key = data.draw(st.sampled_from(["finetuned_from", "float_state_dict", "base_lr", "train_state_dict",
                                     "ema_updates", "rng_state", "teachers", "optimizer", "lr_scheduler", "lr",
                                     "lr_factor"]), label="field")
    how = data.draw(st.sampled_from(TENSOR_KINDS), label="tensor kind")
    value = data.draw(st.one_of(HOSTILE, st.sampled_from([1e38, 1e-300, 1e-3, 1000.0])), label="value")

    def change(c):
        weights = {k: _tensor(how, v) for k, v in c["state_dict"].items()}
        if key == "float_state_dict":
            c["finetuned_from"] = {"base_lr": 1e-3, "float_state_dict": weights}
        elif key == "base_lr":
            c["finetuned_from"] = {"base_lr": copy.deepcopy(value)}
        elif key == "train_state_dict":
            c["train_state_dict"] = weights
        elif key == "rng_state":
            c["rng_state"] = torch.zeros(data.draw(st.integers(0, 6000), label="rng bytes"), dtype=torch.uint8)
        elif key == "lr":
            c["config"]["optimizer"]["args"]["lr"] = copy.deepcopy(value)
        elif key == "lr_factor":
            c["config"]["optimization"]["finetuning"]["lr_factor"] = copy.deepcopy(value)
        else:
            c[key] = copy.deepcopy(value)
    return f"{key} <- {how if 'state_dict' in key else str(value)[:100]!r}", change


@settings(RUNS, max_examples=10 * SCALE)
@given(data=st.data())
def test_mutated_checkpoints_resumed_or_finetuned_end_in_success_or_one_line(run, tmp_path_factory, data):
    """train.py -r (resume one more epoch) or -r -q (finetune one epoch) on a received checkpoint
    whose training state is mutated, run in a folder of its own (a received checkpoint's runs go
    to saved/ of the current folder): exit 0, or one line; the checkpoint, the run and the corpus
    unchanged, and a refused run leaves no file but complete checkpoints."""
    folder, out = tmp_path_factory.mktemp("received"), tmp_path_factory.mktemp("out")
    ckpt = folder / "received.pth"
    changed = copy.deepcopy(run.dict)
    changes = [_training_state_mutation(data, run) for _ in range(data.draw(st.integers(1, 2), label="changes"))]
    for _, change in changes:
        change(changed)
    torch.save(changed, ckpt)
    finetune = data.draw(st.booleans(), label="finetune")
    args = ["-r", ckpt, "--epochs", "1"] + ["-q", run.run_dir / "quantization.yml"] if finetune else ["-r", ckpt, "--epochs", "3"]
    before = snapshot(run.run_dir, folder, run.corpus)
    proc = run_limited("train.py", args, cwd=out)
    what = f"train.py {args}: {'; '.join(text for text, _ in changes)}"
    event(f"train.py {'finetune' if finetune else 'resume'} exit {proc.returncode}")
    assert_success_or_one_line(proc, what)
    assert_unchanged(before, snapshot(run.run_dir, folder, run.corpus))
    assert not list(folder.rglob(".*.tmp")) + list(out.rglob(".*.tmp")), what
    if proc.returncode == 1:
        runs = out / "saved" / "models"
        kept = [p for p in runs.rglob("*") if p.is_file()] if runs.is_dir() else []
        assert all(p.suffix == ".pth" or (p.name == "config.yml" and len(list(p.parent.iterdir())) > 1)
                   for p in kept), (what, kept)
        for p in kept:
            if p.suffix == ".pth":
                torch.load(p, weights_only=True)   # complete
