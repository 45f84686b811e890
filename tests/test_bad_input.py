"""Bad input of every kind (checkpoints, solution YAML, CLI flags, audio, corpus lists, output
paths), each a row of CASES: exit status 1, one ``error:`` line naming the problem, no traceback,
and no file that existed before changed. Most rows call the script's main() in this process (a
subprocess costs a torch import per row); SUBPROCESS_CASES run the scripts as a user does.
Below the table: what bad input must *not* stop (a NaN clip, a corrupt noise file, list
prefixes), run folders, received checkpoints, backups, temp debris and bounded memory."""
import logging
import multiprocessing
import os
import re
import runpy
import subprocess
import sys
import tracemalloc
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from conftest import ROOT, run_script
from tiny import assert_unchanged, build_tiny_corpus, run_folders, snapshot, tiny_config


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A tiny corpus, a 2-epoch run on it, and its quantization.yml and pruning.yml."""
    tmp = tmp_path_factory.mktemp("bad-input")
    corpus = build_tiny_corpus(tmp / "corpus")
    config = tiny_config(tmp, corpus)
    run_script("train.py", "-c", config)
    run_dir = run_folders(tmp)[-1]
    ckpt = run_dir / "model_best.pth"
    run_script("quantize.py", "-r", ckpt)
    run_script("prune.py", "-r", ckpt)
    clip = sorted((corpus / "one").glob("*.wav"))[0]
    return SimpleNamespace(tmp=tmp, corpus=corpus, config=config, run_dir=run_dir, ckpt=ckpt,
                           q=run_dir / "quantization.yml", p=run_dir / "pruning.yml", clip=clip)


# ---- builders of bad files ----------------------------------------------------------------------

def forged(w, tmp, change, name="forged.pth"):
    """A copy of the trained checkpoint with ``change(ckpt)`` applied."""
    ckpt = torch.load(w.ckpt, weights_only=True)
    change(ckpt)
    path = tmp / name
    torch.save(ckpt, path)
    return path


def setter(*keys, value):
    def change(ckpt):
        node = ckpt
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
    return change


def bad_q(w, tmp, layer, key, value):
    data = yaml.safe_load(w.q.read_text())
    data["layers"][layer][key] = value
    path = tmp / "bad_quantization.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def yml(tmp, text, name="bad.yml"):
    path = tmp / name
    path.write_text(text)
    return path


def wav(tmp, samples, rate=16000, name="clip.wav", subtype="FLOAT"):
    path = tmp / name
    sf.write(str(path), np.asarray(samples, dtype=np.float32), rate, subtype=subtype)
    return path


def with_header_rate(tmp, rate, name):
    """A 1 s 16 kHz PCM WAV whose header claims ``rate`` Hz (and the matching byte rate)."""
    path = wav(tmp, np.zeros(16000), name=name, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    data[24:28] = int(rate).to_bytes(4, "little")
    data[28:32] = int(rate * 2).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    return path


def corpus_copy(w, tmp, edit):
    """A copy of the tiny corpus with ``edit(root)`` applied."""
    import shutil
    root = tmp / "corpus"
    shutil.copytree(w.corpus, root)
    edit(root)
    return root


def nan_every(split_list):
    def edit(root):
        for rel in (root / split_list).read_text().split():
            sf.write(str(root / rel), np.full(16000, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    return edit


def mostly_missing(root):
    lines = (root / "testing_list.txt").read_text().split()
    (root / "testing_list.txt").write_text("\n".join(lines[:2] + [f"one/gone_{i}.wav" for i in range(5)]) + "\n")


def config_with(w, tmp, change, name="other.yml"):
    cfg = yaml.safe_load(w.config.read_text())
    change(cfg)
    path = tmp / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def long_with_inf(tmp):
    samples = np.random.default_rng(0).standard_normal(16000 * 30).astype(np.float32) * 0.1
    samples[16000 * 25] = np.inf   # in the third 10 s block: found while streaming
    return wav(tmp, samples, name="long_inf.wav")


# ---- the table: (id, script, args builder (w, tmp) -> list, text the error line must hold) --------

def C(name, script, build, pattern):
    return pytest.param(script, build, pattern, id=name)


CKPT = [  # forged checkpoints, read by every script that takes -r
    C("ckpt-num_classes-1", "test.py", lambda w, t: ["-r", forged(w, t, setter("arch_args", "num_classes", value=1))], "num_classes"),
    C("ckpt-num_classes-huge", "profile.py", lambda w, t: ["-r", forged(w, t, setter("arch_args", "num_classes", value=10**6))], "num_classes"),
    C("ckpt-dropout-1", "predict.py", lambda w, t: ["-r", forged(w, t, setter("arch_args", "dropout", value=1.0)), w.clip], "dropout"),
    C("ckpt-dropout-string", "export.py", lambda w, t: ["-r", forged(w, t, setter("arch_args", "dropout", value="x")), "-o", t / "out"], "dropout"),
    C("ckpt-widths-92TB", "test.py", lambda w, t: ["-r", forged(w, t, setter("arch_args", "widths", value=[8, 8, 10**12]))], "widths"),
    C("ckpt-widths-zero", "quantize.py", lambda w, t: ["-r", forged(w, t, setter("arch_args", "widths", value=[0, 8, 64]))], "widths"),
    C("ckpt-widths-string", "prune.py", lambda w, t: ["-r", forged(w, t, setter("arch_args", "widths", value="abc"))], "widths"),
    C("ckpt-widths-bool", "test.py", lambda w, t: ["-r", forged(w, t, setter("arch_args", "widths", value=[True, 8, 64]))], "widths"),
    C("ckpt-arch_args-unknown", "test.py", lambda w, t: ["-r", forged(w, t, setter("arch_args", value={"depth": 3}))], "unknown arch_args"),
    C("ckpt-arch_args-list", "test.py", lambda w, t: ["-r", forged(w, t, setter("arch_args", value=[1, 2]))], "arch_args must be a mapping"),
    C("ckpt-arch-base-class", "test.py", lambda w, t: ["-r", forged(w, t, setter("arch", value="BaseModel"))], "architecture 'BaseModel'"),
    C("ckpt-arch-layer-class", "profile.py", lambda w, t: ["-r", forged(w, t, setter("arch", value="FixedPointConv2d"))], "architecture"),
    C("ckpt-arch-number", "test.py", lambda w, t: ["-r", forged(w, t, setter("arch", value=42))], "arch must be a name"),
    C("ckpt-n_mfcc-0", "test.py", lambda w, t: ["-r", forged(w, t, setter("features", "n_mfcc", value=0))], "features.n_mfcc"),
    C("ckpt-n_mfcc-20", "test.py", lambda w, t: ["-r", forged(w, t, setter("features", "n_mfcc", value=20))], "the model reads"),
    C("ckpt-sample_rate-1", "predict.py", lambda w, t: ["-r", forged(w, t, setter("features", "sample_rate", value=1)), w.clip], "features.sample_rate"),
    C("ckpt-hop_length-0", "test.py", lambda w, t: ["-r", forged(w, t, setter("features", "hop_length", value=0))], "features.hop_length"),
    C("ckpt-fmax-above-nyquist", "test.py", lambda w, t: ["-r", forged(w, t, setter("features", "fmax", value=12000.0))], "fmax"),
    C("ckpt-top_db-nan", "test.py", lambda w, t: ["-r", forged(w, t, setter("features", "top_db", value=float("nan")))], "features.top_db"),
    C("ckpt-clip_samples-huge", "predict.py", lambda w, t: ["-r", forged(w, t, setter("features", "clip_samples", value=10**12)), w.clip], "features.clip_samples"),
    C("ckpt-features-unknown", "test.py", lambda w, t: ["-r", forged(w, t, setter("features", "window", value="hann"))], "unknown feature parameters"),
    C("ckpt-features-string", "test.py", lambda w, t: ["-r", forged(w, t, setter("features", value="mfcc"))], "features must be a mapping"),
    C("ckpt-mean-shape", "test.py", lambda w, t: ["-r", forged(w, t, setter("normalization", "mean", value=torch.zeros(12)))], "normalization.mean"),
    C("ckpt-mean-2d", "predict.py", lambda w, t: ["-r", forged(w, t, setter("normalization", "mean", value=torch.zeros(13, 13))), w.clip], "normalization.mean"),
    C("ckpt-mean-nan", "predict.py", lambda w, t: ["-r", forged(w, t, setter("normalization", "mean", value=torch.full((13,), float("nan")))), w.clip], "normalization.mean"),
    C("ckpt-mean-list", "test.py", lambda w, t: ["-r", forged(w, t, setter("normalization", "mean", value=[0.0] * 13))], "normalization.mean"),
    C("ckpt-std-zero", "test.py", lambda w, t: ["-r", forged(w, t, setter("normalization", "std", value=torch.zeros(13)))], "normalization.std must be above 0"),
    C("ckpt-std-int", "test.py", lambda w, t: ["-r", forged(w, t, setter("normalization", "std", value=torch.ones(13, dtype=torch.int64)))], "normalization.std"),
    C("ckpt-std-missing", "test.py", lambda w, t: ["-r", forged(w, t, setter("normalization", value={"mean": torch.zeros(13)}))], "exactly mean and std"),
    C("ckpt-keywords-duplicate", "predict.py", lambda w, t: ["-r", forged(w, t, setter("keywords", value=["one", "one", "two"])), w.clip], "keywords"),
    C("ckpt-keywords-count", "test.py", lambda w, t: ["-r", forged(w, t, setter("keywords", value=["one", "two"]))], "keywords must be 3"),
    C("ckpt-keywords-numbers", "test.py", lambda w, t: ["-r", forged(w, t, setter("keywords", value=[1, 2, 3]))], "keywords"),
    C("ckpt-state_dict-nan", "predict.py", lambda w, t: ["-r", forged(w, t, lambda c: c["state_dict"]["fc4.bias"].fill_(float("nan"))), w.clip], "NaN or infinite weights"),
    C("ckpt-state_dict-list", "test.py", lambda w, t: ["-r", forged(w, t, setter("state_dict", value=[1, 2]))], "state_dict"),
    C("ckpt-config-list", "test.py", lambda w, t: ["-r", forged(w, t, setter("config", value=[1]))], "config must be a mapping"),
    C("ckpt-config-data_loader-string", "test.py", lambda w, t: ["-r", forged(w, t, setter("config", "data_loader", value="x"))], "config.data_loader"),
    C("ckpt-epoch-negative", "train.py", lambda w, t: ["-r", forged(w, t, setter("epoch", value=-1))], "epoch must be an integer"),
    C("ckpt-epoch-string", "train.py", lambda w, t: ["-r", forged(w, t, setter("epoch", value="two"))], "epoch must be an integer"),
    C("ckpt-monitor_best-string", "train.py", lambda w, t: ["-r", forged(w, t, setter("monitor_best", value="best"))], "monitor_best"),
    C("ckpt-rng_state-float", "train.py", lambda w, t: ["-r", forged(w, t, setter("rng_state", value=torch.zeros(5)))], "rng_state"),
    C("ckpt-truncated", "test.py", lambda w, t: ["-r", yml(t, "PK\x03\x04 truncated", "cut.pth")], "not a readable checkpoint"),
]

SOLUTIONS = [  # quantization.yml / pruning.yml
    C("q-bits-100000", "test.py", lambda w, t: ["-r", w.ckpt, "-q", bad_q(w, t, "conv1", "bits_weights", 100000)], "at most 32"),
    C("q-bits-64-weights", "export.py", lambda w, t: ["-r", w.ckpt, "-q", bad_q(w, t, "fc3", "bits_weights", 64), "-o", t / "out"], "at most 32"),
    C("q-bits-64-inputs", "predict.py", lambda w, t: ["-r", w.ckpt, "-q", bad_q(w, t, "conv2", "bits_inputs", 64), w.clip], "at most 32"),
    C("q-accumulator-64", "profile.py", lambda w, t: ["-r", w.ckpt, "-q", bad_q(w, t, "conv1", "bits_accumulator", 64)], "at most 53"),
    C("q-il-huge", "test.py", lambda w, t: ["-r", w.ckpt, "-q", bad_q(w, t, "fc4", "il_weights", 10**6)], "integer lengths"),
    C("q-bits-negative", "prune.py", lambda w, t: ["-r", w.ckpt, "-q", bad_q(w, t, "fc4", "bits_outputs", -1)], "bitwidths must be >= 0"),
    C("q-bits-string", "predict.py", lambda w, t: ["-r", w.ckpt, "-q", bad_q(w, t, "conv1", "bits_weights", "8"), w.clip], "must be an integer"),
    C("q-bits-float", "test.py", lambda w, t: ["-r", w.ckpt, "-q", bad_q(w, t, "conv1", "bits_weights", 4.5)], "must be an integer"),
    C("q-bits-bool", "test.py", lambda w, t: ["-r", w.ckpt, "-q", bad_q(w, t, "conv1", "bits_weights", True)], "must be an integer"),
    C("q-unknown-layer", "prune.py", lambda w, t: ["-r", w.ckpt, "-q", yml(t, "layers: {conv9: {bits_weights: 8, il_weights: 0}}\n")], "conv9"),
    C("q-layers-list", "test.py", lambda w, t: ["-r", w.ckpt, "-q", yml(t, "layers: [conv1]\n")], "must map layer names"),
    C("q-not-yaml", "profile.py", lambda w, t: ["-r", w.ckpt, "-q", yml(t, "layers: {conv1: [\n")], "is not valid YAML"),
    C("q-missing-file", "test.py", lambda w, t: ["-r", w.ckpt, "-q", t / "none.yml"], "not found"),
    C("q-python-tag", "test.py", lambda w, t: ["-r", w.ckpt, "-q", yml(t, "layers: !!python/object/apply:os.system ['echo hi']\n")], "is not valid YAML"),
    C("p-index-outside", "test.py", lambda w, t: ["-r", w.ckpt, "-p", yml(t, "pruned_filters: {fc3: [99]}\n")], "outside"),
    C("p-all-kernels", "profile.py", lambda w, t: ["-r", w.ckpt, "-p", yml(t, "pruned_filters: {conv1: [0, 1, 2, 3, 4, 5, 6, 7]}\n")], "prunes all 8 kernels"),
    C("p-indices-string", "export.py", lambda w, t: ["-r", w.ckpt, "-p", yml(t, "pruned_filters: {conv2: abc}\n"), "-o", t / "out"], "list of kernel indices"),
    C("p-no-section", "predict.py", lambda w, t: ["-r", w.ckpt, "-p", yml(t, "layers: {}\n"), w.clip], "no 'pruned_filters' section"),
]

OUTPUTS = [  # -o and the inputs a script must never write over
    C("export-o-under-a-file", "export.py", lambda w, t: ["-r", w.ckpt, "-o", yml(t, "x", "file") / "bundle"], "is a file"),
    C("export-o-run-folder-own-q", "export.py", lambda w, t: ["-r", w.ckpt, "-q", w.q, "-o", w.run_dir], "would overwrite the input"),
    C("export-o-over-checkpoint", "export.py", lambda w, t: ["-r", forged(w, t, lambda c: None, "model_compact.pth"), "-o", t], "would overwrite the input"),
    C("export-o-users-quantization", "export.py", lambda w, t: ["-r", w.ckpt, "-q", bad_q(w, t, "fc4", "bits_outputs", 7), "-o", w.run_dir], "may be yours"),
    C("quantize-o-under-a-file", "quantize.py", lambda w, t: ["-r", w.ckpt, "-o", yml(t, "x", "file") / "q.yml"], "is a file"),
    C("quantize-o-is-checkpoint", "quantize.py", lambda w, t: ["-r", w.ckpt, "-o", w.ckpt], "would overwrite the input"),
    C("quantize-o-is-config", "quantize.py", lambda w, t: ["-r", w.ckpt, "-c", w.config, "-o", w.config], "would overwrite the input"),
    C("quantize-o-is-pruning", "quantize.py", lambda w, t: ["-r", w.ckpt, "-p", w.p, "-o", w.p], "would overwrite the input"),
    C("prune-o-is-quantization", "prune.py", lambda w, t: ["-r", w.ckpt, "-q", w.q, "-o", w.q], "would overwrite the input"),
]

FLAGS = [  # predict.py detector settings
    C("predict-smooth-nan", "predict.py", lambda w, t: ["-r", w.ckpt, w.clip, "--smooth-ms", "nan"], "--smooth-ms must be a finite"),
    C("predict-hop-inf", "predict.py", lambda w, t: ["-r", w.ckpt, w.clip, "--hop-ms", "inf"], "--hop-ms must be a finite"),
    C("predict-threshold-nan", "predict.py", lambda w, t: ["-r", w.ckpt, w.clip, "--threshold", "nan"], "--threshold must be a finite"),
    C("predict-refractory-inf", "predict.py", lambda w, t: ["-r", w.ckpt, w.clip, "--refractory-ms", "inf"], "--refractory-ms must be a finite"),
    C("predict-refractory-minus-inf", "predict.py", lambda w, t: ["-r", w.ckpt, w.clip, "--refractory-ms=-inf"], "--refractory-ms must be a finite"),
    C("predict-hop-negative", "predict.py", lambda w, t: ["-r", w.ckpt, w.clip, "--hop-ms=-100"], "--hop-ms must be above 0"),
    C("predict-hop-longer-than-window", "predict.py", lambda w, t: ["-r", w.ckpt, w.clip, "--hop-ms", "5000"], "--hop-ms"),
    C("predict-threshold-0", "predict.py", lambda w, t: ["-r", w.ckpt, w.clip, "--threshold", "0"], "--threshold is a probability"),
    C("predict-smooth-negative", "predict.py", lambda w, t: ["-r", w.ckpt, w.clip, "--smooth-ms=-1"], "--smooth-ms must be >= 0"),
]

AUDIO = [  # predict.py on hostile audio
    C("audio-nan-clip", "predict.py", lambda w, t: ["-r", w.ckpt, wav(t, np.where(np.arange(16000) == 99, np.nan, 0.1))], "NaN or infinite samples"),
    C("audio-inf-late-in-long-recording", "predict.py", lambda w, t: ["-r", w.ckpt, long_with_inf(t)], "NaN or infinite samples"),
    C("audio-header-1-hz", "predict.py", lambda w, t: ["-r", w.ckpt, with_header_rate(t, 1, "one_hz.wav")], "sample rate 1 Hz is outside"),
    C("audio-header-10-mhz", "predict.py", lambda w, t: ["-r", w.ckpt, with_header_rate(t, 10_000_000, "ten_mhz.wav")], "is outside the supported"),
    C("audio-text-file", "predict.py", lambda w, t: ["-r", w.ckpt, yml(t, "not audio", "text.wav")], "cannot read audio file"),
    C("audio-empty", "predict.py", lambda w, t: ["-r", w.ckpt, wav(t, np.zeros(0), name="empty.wav")], "no samples"),
    C("audio-missing-second-file", "predict.py", lambda w, t: ["-r", w.ckpt, w.clip, t / "missing.wav"], "audio file not found"),
    C("audio-folder", "predict.py", lambda w, t: ["-r", w.ckpt, t], "audio file not found"),
]

CORPUS_LISTS = [  # test.py --data-dir on a damaged copy of the corpus
    C("list-mostly-missing", "test.py", lambda w, t: ["-r", w.ckpt, "--data-dir", corpus_copy(w, t, mostly_missing)], "clips that do not exist"),
    C("list-binary", "test.py", lambda w, t: ["-r", w.ckpt, "--data-dir", corpus_copy(w, t, lambda r: (r / "validation_list.txt").write_bytes(b"\xff\xfe\x00bad"))], "not a readable text list"),
    C("split-all-nan", "test.py", lambda w, t: ["-r", w.ckpt, "--data-dir", corpus_copy(w, t, nan_every("testing_list.txt"))], "test split"),
    C("corpus-no-words", "test.py", lambda w, t: ["-r", w.ckpt, "--data-dir", t], "holds no word folders"),
    C("corpus-missing", "test.py", lambda w, t: ["-r", w.ckpt, "--data-dir", t / "nowhere"], "does not exist"),
]

SUBPROCESS_CASES = [  # as a user runs them, including train.py runs that fail after their run folder exists
    C("sub-train-resume-other-optimizer", "train.py", lambda w, t: ["-r", w.ckpt, "-c", config_with(w, t, lambda c: c.update(optimizer={"type": "SGD", "args": {"lr": 0.1}}))], "holds the state of optimizer Adam"),
    C("sub-train-diverges", "train.py", lambda w, t: ["-c", w.config, "--lr", "1e30"], "training diverged"),
    C("sub-train-list-mostly-missing", "train.py", lambda w, t: ["-c", w.config, "--data-dir", corpus_copy(w, t, mostly_missing)], "clips that do not exist"),
    C("sub-train-finetune-bad-q", "train.py", lambda w, t: ["-r", w.ckpt, "-q", bad_q(w, t, "fc3", "bits_weights", 64)], "at most 32"),
    C("sub-test-forged-widths", "test.py", lambda w, t: ["-r", forged(w, t, setter("arch_args", "widths", value=[8, 8, 10**12]))], "widths"),
    C("sub-predict-smooth-nan", "predict.py", lambda w, t: ["-r", w.ckpt, w.clip, "--smooth-ms", "nan"], "--smooth-ms"),
    C("sub-predict-nan-clip", "predict.py", lambda w, t: ["-r", w.ckpt, wav(t, np.full(8000, np.inf))], "NaN or infinite samples"),
    C("sub-export-o-run-folder", "export.py", lambda w, t: ["-r", w.ckpt, "-q", w.q, "-o", w.run_dir], "would overwrite the input"),
    C("sub-quantize-bits-64", "profile.py", lambda w, t: ["-r", w.ckpt, "-q", bad_q(w, t, "conv1", "bits_weights", 64)], "at most 32"),
]

IN_PROCESS_CASES = CKPT + SOLUTIONS + OUTPUTS + FLAGS + AUDIO + CORPUS_LISTS


def _drop_log_handlers():
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_kws", False):
            root.removeHandler(h)
            h.close()


def run_in_process(script, args, capsys):
    """(exit status, stdout, stderr) of ``script``'s main() with ``args``."""
    namespace = runpy.run_path(str(ROOT / script), run_name="bad_input_case")
    argv, cwd = sys.argv, os.getcwd()
    sys.argv = [script, *map(str, args)]
    os.chdir(ROOT)
    try:
        with pytest.raises(SystemExit) as exited:
            namespace["main"]()
    finally:
        sys.argv = argv
        os.chdir(cwd)
        _drop_log_handlers()
    out, err = capsys.readouterr()
    return exited.value.code, out, err


PROGRESS_BAR = re.compile(r"\d+%\|.*\| \d+/\d+ \[")


def assert_one_line_error(status, err, pattern):
    assert status == 1, err
    assert "Traceback" not in err, err
    # progress bars (tqdm, erased on a terminal) are not messages
    lines = [part for line in err.split("\n") for part in line.split("\r")]
    lines = [line for line in lines if line.strip() and not PROGRESS_BAR.search(line)]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert pattern in lines[0], lines[0]


def _watched(w, tmp):
    return (w.run_dir, w.corpus, w.config, w.tmp / "saved", tmp)


@pytest.mark.parametrize("script,build,pattern", IN_PROCESS_CASES)
def test_bad_input_is_a_one_line_error(script, build, pattern, work, tmp_path, capsys):
    args = build(work, tmp_path)
    before = snapshot(*_watched(work, tmp_path))
    runs = run_folders(work.tmp)
    status, _, err = run_in_process(script, args, capsys)
    assert_one_line_error(status, err, pattern)
    assert_unchanged(before, snapshot(*_watched(work, tmp_path)))
    assert run_folders(work.tmp) == runs


@pytest.mark.parametrize("script,build,pattern", SUBPROCESS_CASES)
def test_bad_input_from_the_command_line(script, build, pattern, work, tmp_path):
    args = build(work, tmp_path)
    before = snapshot(*_watched(work, tmp_path))
    runs = {name: run_folders(work.tmp, name) for name in ("tiny", "tiny_finetune")}
    proc = run_script(script, *args, check=False)
    assert_one_line_error(proc.returncode, proc.stderr, pattern)
    assert_unchanged(before, snapshot(*_watched(work, tmp_path)))
    # a failed train.py leaves no run folder (nor log folder) behind
    assert {name: run_folders(work.tmp, name) for name in runs} == runs
    logs = work.tmp / "saved" / "log" / "tiny"
    assert sorted(p.name for p in logs.iterdir()) == [p.name for p in runs["tiny"]]

