"""A property-based fuzz of the scripts' whole runs (hypothesis): train.py on a tiny corpus with a
config whose values are hostile but well formed (each key's edges, just inside and just outside
its bound, exotic optimizers and schedulers, extreme feature settings and augmentations) and
hostile flags; quantize.py, prune.py and export.py on a trained run with hostile search settings
(-c), quantization.yml and pruning.yml values and flags. Each example is a subprocess under
resource limits (address space, CPU time, a wall-clock timeout: tests/script_runs.py) and must
end in exit 0 with its outputs, or exit 1 with one ``error:`` line and no traceback; no file that
existed changes, no temporary file is left, and a refused run leaves no new file in the output
folders. Derandomized (the same examples every run), without shrinking (a failing example is
reported as drawn, with its command); ``KWS_FUZZ_SCALE=N`` runs N times the examples."""
import copy
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from script_runs import assert_success_or_one_line, run_limited
from tiny import assert_unchanged, quantized_tiny_run, snapshot

SCALE = int(os.environ.get("KWS_FUZZ_SCALE", "1"))
RUNS = settings(derandomize=True, database=None, deadline=None, phases=(Phase.explicit, Phase.generate),
                suppress_health_check=list(HealthCheck))


def temporary_files(*roots):
    """Files an atomic write left behind (``.<name>.<pid>.<random>.tmp``) under ``roots``."""
    return [p for root in roots for p in Path(root).rglob(".*.tmp")]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 2-epoch run on the tiny corpus, its quantization.yml (8 bits everywhere) and a
    pruning.yml beside it, and the tiny config it was trained with."""
    tmp = tmp_path_factory.mktemp("fuzz-scripts")
    corpus, config, run_dir = quantized_tiny_run(tmp)
    pruning = {"pruned_filters": {"conv1": [0], "conv2": [1, 2], "fc3": [3, 4, 5], "fc4": []}}
    (run_dir / "pruning.yml").write_text(yaml.safe_dump(pruning))
    return SimpleNamespace(tmp=tmp, corpus=corpus, config=config, run_dir=run_dir, ckpt=run_dir / "model_best.pth",
                           cfg=yaml.safe_load(config.read_text()), pruning=pruning,
                           q=yaml.safe_load((run_dir / "quantization.yml").read_text()))


def _set(tree, path, value):
    node = tree
    for key in path[:-1]:
        node = node.setdefault(key, {}) if isinstance(node.get(key, {}), dict) else {}
    node[path[-1]] = value


# ---- train.py -------------------------------------------------------------------------------------

# per key path: values at and beyond its bounds, exotic but well formed; each is either refused in
# one line or cheap enough to train on the tiny corpus in seconds
TRAIN_VALUES = {
    ("seed",): [0, 2 ** 32 - 1, 2 ** 32],
    ("deterministic",): [False],
    ("name",): ["n" * 100, "n" * 101, "-rf", "caf\u00e9", "a.b", " lead"],
    ("metrics",): [["top1"], ["top1", "balanced_accuracy", "false_alarm_rate", "min_keyword_recall"]],
    ("arch", "args", "dropout"): [0, 0.999999, 1],
    ("arch", "args", "widths"): [[1, 1, 1], [1, 1, 4096], [0, 1, 1]],
    ("data_loader", "args", "batch_size"): [1, 65536, 65537],
    ("data_loader", "args", "eval_batch_size"): [1, 65536, 0],
    ("data_loader", "args", "normalize"): [False],
    ("data_loader", "args", "background_noise"): [None, {"train": 0, "validation": 0, "test": 0},
                                                  {"train": 1, "validation": 3, "test": 2, "seed": 2 ** 32 - 1},
                                                  {"train": 100_001}],
    ("data_loader", "args", "keywords"): [["one"], ["bed", "cat"], ["one", "two", "three", "bed", "cat"],
                                          ["nothere", "one"], ["ONE", "two", "three"]],
    ("data_loader", "args", "features"): [
        {"n_fft": 16, "win_length": 16, "hop_length": 16, "n_mels": 1, "n_mfcc": 1, "fmax": 4000},
        {"n_mels": 512, "n_mfcc": 512, "fmax": 8000}, {"n_fft": 16384, "win_length": 16384, "fmax": 8000},
        {"hop_length": 1, "frames": 100, "fmax": 8000}, {"fmin": 3999.999, "fmax": 4000},
        {"sample_rate": 4000, "clip_samples": 4000, "fmax": 2000, "n_fft": 128, "win_length": 100,
         "hop_length": 40, "frames": 100},
        {"sample_rate": 192000, "clip_samples": 192000, "n_fft": 4096, "win_length": 4096, "hop_length": 1920,
         "fmax": 96000},
        {"top_db": 1e-300, "fmax": 4000}, {"clip_samples": 1_920_000, "fmax": 4000}, {"frames": 1},
        {"frontend": "integer", "fmax": 4000}, {"fmin": 0, "fmax": 8000.000001}],
    ("data_loader", "args", "augment"): [
        {"enabled": True, "time_shift_ms": 1000, "noise_prob": 1, "snr_db": [-200, -200], "gain_db": [200, 200]},
        {"enabled": True, "spec_time_masks": 1000, "spec_time_width": 1000, "spec_freq_masks": 1000,
         "spec_freq_width": 1000},
        {"enabled": True, "stretch": 0.999999, "warp": 0.999999, "gain_db": [-200, -200]},
        {"enabled": True, "bandlimit_prob": 1, "bandlimit_hz": 96000, "edge_negatives": 1, "edge_keep": 0},
        {"enabled": True, "noise_prob": 1, "snr_db": [200, 200], "snr_reference": "speech"}, None],
    ("data_loader", "args", "task"): [{"silence_share": 100, "unknown_share": 0, "quiet_fraction": 1},
                                      {"silence_share": 0, "unknown_share": 1000}],
    ("data_loader", "args", "stream_windows"): [{"hours": 1e-300, "per_keyword": 1},
                                                {"hours": 0.01, "per_keyword": 100, "negatives": 100}],
    ("optimizer",): [{"type": "Rprop", "args": {"lr": 1e-300}}, {"type": "ASGD", "args": {"lr": 1e300}},
                     {"type": "SGD", "args": {"lr": 1e10, "momentum": 0.999999, "nesterov": True}},
                     {"type": "Adadelta", "args": {"lr": 1e-300, "rho": 1.0}},
                     {"type": "Adam", "args": {"lr": 0.003, "betas": [0.0, 0.0], "eps": 0}},
                     {"type": "RMSprop", "args": {"lr": 1e-3, "alpha": 0, "eps": 0, "centered": True}},
                     {"type": "Adagrad", "args": {"lr": 1e-2, "lr_decay": 1e300}},
                     {"type": "AdamW", "args": {"lr": 1e-3, "weight_decay": 1000}},
                     {"type": "NAdam", "args": {"lr": 1e-3, "momentum_decay": 1e300}}],
    ("lr_scheduler",): [{"type": "StepLR", "args": {"step_size": 1, "gamma": 1e300}},
                        {"type": "ExponentialLR", "args": {"gamma": 1e-300}},
                        {"type": "CosineAnnealingWarmRestarts", "args": {"T_0": 1, "T_mult": 1000}},
                        {"type": "LinearLR", "args": {"start_factor": 1e-300, "total_iters": 2 ** 62}},
                        {"type": "PolynomialLR", "args": {"total_iters": 1, "power": 1e300}},
                        {"type": "MultiStepLR", "args": {"milestones": [0, 2 ** 62], "gamma": 1e-300}},
                        {"type": "CosineAnnealingLR", "args": {"T_max": 1, "eta_min": 1e300}}, None],
    ("trainer", "epochs"): [1, 2, 100_001],
    ("trainer", "save_period"): [1, 100_000],
    ("trainer", "early_stop"): [0, 1, None],
    ("trainer", "monitor"): ["off", "min val_loss", "max val_stream_mean_recall", "max val_false_alarm_rate",
                             "min loss", "max val_min_keyword_recall"],
    ("trainer", "class_weights"): [[1e6, 1e-300, 1, 1], [1e-300] * 4, [1, 1]],
    ("trainer", "ema"): [1e-300, 0.999999999, None],
    ("trainer", "distillation"): [{"teachers": 1, "temperature": 1e-300, "alpha": 1},
                                  {"teachers": 1, "temperature": 1000, "alpha": 0}],
    ("trainer", "verbosity"): [0],
    ("trainer", "tensorboard"): [False],
    ("detector",): [None, {"target_false_alarms_per_hour": 1e-300, "stream_hours": 1e-300, "smooth_ms": [0]},
                    {"target_false_alarms_per_hour": 1e6, "stream_hours": 0.01, "smooth_ms": [10000] * 8},
                    {"stream_hours": 0.01, "seed": 2 ** 32 - 1, "smooth_ms": [0, 10000]}],
    ("optimization", "quantization"): [{"error_margin": 0, "schedule": [2]}, {"bits_accumulator": 53}],
}
TRAIN_FLAGS = [["--lr", "1e-300"], ["--lr", "1e300"], ["--lr", "inf"], ["--bs", "1"], ["--bs", "-1"],
               ["--epochs", "1"], ["--epochs", "0"], ["--seed", "4294967295"], ["--seed", "-1"],
               ["--name", "x" * 100], ["--name", ".."], ["--data-dir", "/dev/null"], ["--data-dir", "/proc/self"]]
TRAIN_CHANGES = st.lists(st.sampled_from(sorted(TRAIN_VALUES, key=repr)).flatmap(
    lambda path: st.tuples(st.just(path), st.sampled_from(TRAIN_VALUES[path]))), min_size=1, max_size=3)


def _with_classes(cfg):
    """Most examples keep num_classes and class_weights in step with the keywords (a mismatch is
    refused before any work, a path the in-process fuzz already covers)."""
    args = cfg["data_loader"]["args"]
    classes = len(args.get("keywords", ["one", "two", "three"])) + 1 + bool((args.get("task") or {}).get("silence_share"))
    cfg["arch"].setdefault("args", {})["num_classes"] = classes
    weights = cfg["trainer"].get("class_weights")
    if weights is not None and len(weights) != classes:
        cfg["trainer"]["class_weights"] = (weights * classes)[:classes]
    return cfg


@settings(RUNS, max_examples=8 * SCALE)
@given(TRAIN_CHANGES, st.lists(st.sampled_from(TRAIN_FLAGS), max_size=2), st.booleans())
def test_train_runs_end_in_a_model_or_one_line(run, tmp_path_factory, changes, flags, in_step):
    """train.py -c <hostile config> [hostile flags], one epoch on the tiny corpus."""
    tmp = tmp_path_factory.mktemp("train")
    cfg = copy.deepcopy(run.cfg)
    cfg["trainer"].update(epochs=1, save_dir=str(tmp / "saved"))
    cfg["data_loader"]["args"]["cache_dir"] = str(tmp / "cache")
    for path, value in changes:
        _set(cfg, path, copy.deepcopy(value))
    if in_step:
        _with_classes(cfg)
    config = tmp / "config.yml"
    config.write_text(yaml.safe_dump(cfg, allow_unicode=True))
    args = ["-c", config] + [part for flag in flags for part in flag]
    before = snapshot(run.corpus, config)
    proc = run_limited("train.py", args)
    what = f"train.py {args}: changes {changes}"
    event(f"exit {proc.returncode}")
    assert_success_or_one_line(proc, what)
    assert_unchanged(before, snapshot(run.corpus, config))
    assert not temporary_files(tmp), what
    models = tmp / "saved" / "models"
    runs = sorted(p for p in models.glob("*/*") if p.is_dir()) if models.is_dir() else []
    if proc.returncode == 0:
        assert len(runs) == 1 and (runs[0] / "model_best.pth").is_file(), what
    else:
        # a refused run leaves no run folder; one that failed after an epoch (its own or a
        # teacher's) keeps its checkpoints, from which it resumes
        assert all(list(r.rglob("checkpoint-epoch*.pth")) for r in runs), (what, runs)


# ---- quantize.py, prune.py, export.py on the trained run ---------------------------------------------

SEARCH_VALUES = {
    "error_margin": [0, 99.999, 100, -1e-300],
    "schedule": [[32], [2], [32, 16, 8, 4, 3, 2], "halve", [33]],
    "start_bitwidth": [2, 32], "min_bitwidth": [2, 32],
    "bits_accumulator": [2, 53, 54, "auto"],
    "metric": ["balanced_accuracy", "stream_recall_at_target", "stream_mean_recall"],
    "decrement": ["lambda bw: bw - 30", "lambda bw: bw // 1000"],
    "max_steps": [0, 1, 2 ** 62],
}
LAYER_VALUES = {"bits_inputs": [2, 32, 33], "bits_weights": [2, 32, 1], "bits_outputs": [2, 32],
                "bits_accumulator": [2, 53, 54], "il_inputs": [-1000, 1000, 2 ** 62], "il_weights": [-64, 64],
                "il_outputs": [-2 ** 62, 31]}
PRUNED = [[], [0], list(range(7)), list(range(8)), [7, 7], [63], [64], [-1], [2 ** 62]]


def _solutions(data, run, folder):
    """A quantization.yml and a pruning.yml with drawn values (or None when not drawn)."""
    q = copy.deepcopy(run.q)
    for layer, key, value in data.draw(st.lists(st.tuples(st.sampled_from(sorted(q["layers"])),
                                                          st.sampled_from(sorted(LAYER_VALUES)),
                                                          st.integers(0, 2)), max_size=3)):
        values = LAYER_VALUES[key]
        q["layers"][layer][key] = values[value % len(values)]
        q.get("solutions", {}).get(layer, {})[key] = values[value % len(values)]
    p = copy.deepcopy(run.pruning)
    for layer, value in data.draw(st.lists(st.tuples(st.sampled_from(["conv1", "conv2", "fc3", "fc4"]),
                                                     st.sampled_from(PRUNED)), max_size=2)):
        p["pruned_filters"][layer] = value
    paths = {}
    for name, value in (("quantization.yml", q), ("pruning.yml", p)):
        if data.draw(st.booleans(), label=f"give {name}"):
            paths[name] = folder / name
            paths[name].write_text(yaml.safe_dump(value))
    return paths


def _search_config(data, run, section, folder):
    cfg = copy.deepcopy(run.cfg)
    for key, value in data.draw(st.lists(st.sampled_from(sorted(SEARCH_VALUES)).flatmap(
            lambda k: st.tuples(st.just(k), st.sampled_from(SEARCH_VALUES[k]))), max_size=3)):
        cfg["optimization"][section][key] = value
    path = folder / "search.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@settings(RUNS, max_examples=8 * SCALE)
@given(data=st.data())
def test_compression_runs_end_in_outputs_or_one_line(run, tmp_path_factory, data):
    """quantize.py / prune.py / export.py -r <the run> with hostile -c search settings, -q / -p
    files and flags; outputs go to a fresh folder (-o)."""
    script = data.draw(st.sampled_from(["quantize.py", "prune.py", "export.py"]))
    inputs, out = tmp_path_factory.mktemp("inputs"), tmp_path_factory.mktemp("out")
    solutions = _solutions(data, run, inputs)
    args = ["-r", run.ckpt]
    if script == "quantize.py":
        target = out / "q.yml"
        args += ["-c", _search_config(data, run, "quantization", inputs), "-o", target]
        args += ["-p", solutions["pruning.yml"]] if "pruning.yml" in solutions else []
        args += ["--per-layer"] if data.draw(st.booleans(), label="--per-layer") else []
        expected = [target, target.with_suffix(".png")]
    elif script == "prune.py":
        target = out / "p.yml"
        args += ["-c", _search_config(data, run, "pruning", inputs), "-o", target]
        args += ["-q", solutions["quantization.yml"]] if "quantization.yml" in solutions else []
        expected = [target, target.with_suffix(".png")]
    else:
        target = out / data.draw(st.sampled_from(["bundle", "a/b/c", "."]), label="-o")
        args += ["-o", target]
        args += [part for flag, name in (("-q", "quantization.yml"), ("-p", "pruning.yml")) if name in solutions
                 for part in (flag, solutions[name])]
        args += data.draw(st.sampled_from([[], ["--no-stored"], ["--target", "cortex-m4"]]), label="flags")
        expected = [target / "model_compact.pth"]
    before = snapshot(run.run_dir, inputs)
    proc = run_limited(script, args)
    what = f"{script} {args}: {[p.read_text()[:400] for p in solutions.values()]}"
    event(f"{script} exit {proc.returncode}")
    assert_success_or_one_line(proc, what)
    assert_unchanged(before, snapshot(run.run_dir, inputs))
    assert not temporary_files(run.run_dir, inputs, out), what
    assert set(snapshot(run.run_dir, inputs)) == set(before), what
    written = sorted(p for p in out.rglob("*") if p.is_file())
    if proc.returncode == 0:
        assert all(p.is_file() for p in expected), (what, written)
    else:
        assert not written, (what, written)
