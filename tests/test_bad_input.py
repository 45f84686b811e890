"""Bad input of every kind (checkpoints, solution YAML, CLI flags, audio, corpus lists, output
paths), each a row of CASES: exit status 1, one ``error:`` line naming the problem, no traceback,
and no file that existed before changed. Most rows call the script's main() in this process (a
subprocess costs a torch import per row); SUBPROCESS_CASES run the scripts as a user does.
Below the table: what bad input must *not* stop (a NaN clip, a corrupt noise file, list
prefixes), run folders, received checkpoints, backups, temp debris and bounded memory."""
import os
import re
import subprocess
import sys
import tracemalloc
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from conftest import ROOT, run_script
from script_runs import call_main
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


def listed(name, keep):
    """An edit of a corpus copy: list ``name`` keeps the lines ``keep(line)`` accepts."""
    def edit(root):
        lines = (root / name).read_text().split()
        (root / name).write_text("".join(f"{line}\n" for line in lines if keep(line)))
    return edit


def every_one_in_validation(root):
    """Every clip of the keyword 'one' listed for validation (none left for train and test)."""
    listed("testing_list.txt", lambda line: not line.startswith("one/"))(root)
    lines = set((root / "validation_list.txt").read_text().split()) | {f"one/{p.name}" for p in (root / "one").glob("*.wav")}
    (root / "validation_list.txt").write_text("".join(f"{line}\n" for line in sorted(lines)))


def upper_case_suffixes(root):
    for p in (root / "one").glob("*.wav"):
        p.rename(p.with_suffix(".WAV"))


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
    C("ckpt-widths-four", "test.py", lambda w, t: ["-r", forged(w, t, setter("arch_args", "widths", value=[8, 8, 64, 64]))], "widths"),
    C("ckpt-n_fft-huge", "predict.py", lambda w, t: ["-r", forged(w, t, setter("features", "n_fft", value=10**9)), w.clip], "features.n_fft"),
    C("ckpt-win_length-above-n_fft", "test.py", lambda w, t: ["-r", forged(w, t, setter("features", "win_length", value=1024))], "win_length exceeds n_fft"),
    C("ckpt-arch_args-unknown", "test.py", lambda w, t: ["-r", forged(w, t, setter("arch_args", value={"depth": 3}))], "unknown arch_args"),
    C("ckpt-arch_args-list", "test.py", lambda w, t: ["-r", forged(w, t, setter("arch_args", value=[1, 2]))], "arch_args must be a mapping"),
    C("ckpt-arch-base-class", "test.py", lambda w, t: ["-r", forged(w, t, setter("arch", value="BaseModel"))], "architecture 'BaseModel'"),
    C("ckpt-arch-layer-class", "profile.py", lambda w, t: ["-r", forged(w, t, setter("arch", value="FixedPointConv2d"))], "architecture"),
    C("ckpt-arch-number", "test.py", lambda w, t: ["-r", forged(w, t, setter("arch", value=42))], "arch must be a name"),
    C("ckpt-n_mfcc-0", "test.py", lambda w, t: ["-r", forged(w, t, setter("features", "n_mfcc", value=0))], "features.n_mfcc"),
    C("ckpt-n_mfcc-20", "test.py", lambda w, t: ["-r", forged(w, t, setter("features", "n_mfcc", value=20))], "normalization.mean must be 20 finite floats"),
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
    C("ckpt-keywords-escape", "predict.py", lambda w, t: ["-r", forged(w, t, setter("keywords", value=["\x1b[31mone", "two", "three"])), w.clip], "keywords must be a list of at most 1000 printable words"),
    C("ckpt-keywords-numbers", "test.py", lambda w, t: ["-r", forged(w, t, setter("keywords", value=[1, 2, 3]))], "keywords"),
    C("ckpt-state_dict-nan", "predict.py", lambda w, t: ["-r", forged(w, t, lambda c: c["state_dict"]["fc4.bias"].fill_(float("nan"))), w.clip], "NaN or infinite weights"),
    C("ckpt-state_dict-list", "test.py", lambda w, t: ["-r", forged(w, t, setter("state_dict", value=[1, 2]))], "state_dict"),
    C("ckpt-config-list", "test.py", lambda w, t: ["-r", forged(w, t, setter("config", value=[1]))], "config must be a mapping"),
    C("ckpt-config-data_loader-string", "test.py", lambda w, t: ["-r", forged(w, t, setter("config", "data_loader", value="x"))], "config.data_loader"),
    C("ckpt-config-without-data_loader", "test.py", lambda w, t: ["-r", forged(w, t, lambda c: c["config"].pop("data_loader"))], "no data_loader section"),
    C("ckpt-config-without-trainer", "train.py", lambda w, t: ["-r", forged(w, t, lambda c: c["config"].pop("trainer"))], "'trainer'"),
    C("ckpt-config-keywords-string", "test.py", lambda w, t: ["-r", forged(w, t, setter("config", "data_loader", "args", "keywords", value="one"))], "stores a config the schema refuses (config data_loader.args.keywords must be a list of words"),
    C("ckpt-config-loader-type-number", "test.py", lambda w, t: ["-r", forged(w, t, setter("config", "data_loader", "type", value=7))], "data loader '7'"),
    C("ckpt-config-loader-unknown-arg", "quantize.py", lambda w, t: ["-r", forged(w, t, setter("config", "data_loader", "args", "shuffle_seed", value=1))], "stores a config the schema refuses (config key data_loader.args.shuffle_seed is not known"),
    C("ckpt-epoch-negative", "train.py", lambda w, t: ["-r", forged(w, t, setter("epoch", value=-1))], "epoch must be an integer"),
    C("ckpt-epoch-string", "train.py", lambda w, t: ["-r", forged(w, t, setter("epoch", value="two"))], "epoch must be an integer"),
    C("ckpt-monitor_best-string", "train.py", lambda w, t: ["-r", forged(w, t, setter("monitor_best", value="best"))], "monitor_best"),
    C("ckpt-rng_state-float", "train.py", lambda w, t: ["-r", forged(w, t, setter("rng_state", value=torch.zeros(5)))], "rng_state"),
    C("ckpt-rng_state-short", "train.py", lambda w, t: ["-r", forged(w, t, setter("rng_state", value=torch.zeros(3, dtype=torch.uint8)))], "rng_state must be a byte tensor of torch's generator state"),
    C("ckpt-ema_updates-string", "train.py", lambda w, t: ["-r", forged(w, t, setter("ema_updates", value="x"))], "ema_updates must be an integer"),
    C("ckpt-train_state_dict-shape", "train.py", lambda w, t: ["-r", forged(w, t, lambda c: c.update(train_state_dict={k: v.reshape(-1) for k, v in c["state_dict"].items()}))], "(its train_state_dict) does not fit"),
    C("ckpt-train_state_dict-sparse", "train.py", lambda w, t: ["-r", forged(w, t, lambda c: c.update(train_state_dict={k: v.to_sparse() for k, v in c["state_dict"].items()}))], "train_state_dict holds a sparse"),
    C("ckpt-finetuned_from-string", "train.py", lambda w, t: ["-r", forged(w, t, setter("finetuned_from", value="x"))], "finetuned_from must map"),
    C("ckpt-float_state_dict-sparse", "train.py", lambda w, t: ["-r", forged(w, t, lambda c: c.update(finetuned_from={"base_lr": 1e-3, "float_state_dict": {k: v.to_sparse() for k, v in c["state_dict"].items()}})), "-q", w.q], "finetuned_from.float_state_dict holds a sparse"),
    C("ckpt-teachers-string", "train.py", lambda w, t: ["-r", forged(w, t, setter("teachers", value="x"))], "teachers must be a list"),
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
    C("p-class-output", "test.py", lambda w, t: ["-r", w.ckpt, "-p", yml(t, "pruned_filters: {fc4: [1]}\n")], "prunes class outputs [1] of the class-output layer fc4"),
    C("p-indices-string", "export.py", lambda w, t: ["-r", w.ckpt, "-p", yml(t, "pruned_filters: {conv2: abc}\n"), "-o", t / "out"], "list of kernel indices"),
    C("p-no-section", "predict.py", lambda w, t: ["-r", w.ckpt, "-p", yml(t, "layers: {}\n"), w.clip], "no 'pruned_filters' section"),
]

OUTPUTS = [  # -o and the inputs a script must never write over
    C("export-o-under-a-file", "export.py", lambda w, t: ["-r", w.ckpt, "-o", yml(t, "x", "file") / "bundle"], "is a file"),
    C("export-o-run-folder-own-q", "export.py", lambda w, t: ["-r", w.ckpt, "-q", w.q, "-o", w.run_dir], "would overwrite the input"),
    C("export-o-over-checkpoint", "export.py", lambda w, t: ["-r", forged(w, t, lambda c: None, "model_compact.pth"), "-o", t], "would overwrite the input"),
    C("export-o-users-quantization", "export.py", lambda w, t: ["-r", w.ckpt, "-q", bad_q(w, t, "fc4", "bits_outputs", 7), "-o", w.run_dir], "may be yours"),
    C("export-o-is-the-checkpoint", "export.py", lambda w, t: ["-r", w.ckpt, "-o", w.ckpt], "is a file"),
    C("quantize-o-folder-under-a-file", "quantize.py", lambda w, t: ["-r", w.ckpt, "-o", yml(t, "x", "file") / "sub" / "q.yml"], "is a file"),
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
    C("audio-header-3-khz", "predict.py", lambda w, t: ["-r", w.ckpt, with_header_rate(t, 3000, "three_khz.wav")], "sample rate 3000 Hz is outside"),
    C("audio-20-channels", "predict.py", lambda w, t: ["-r", w.ckpt, wav(t, np.zeros((1600, 20)), name="many.wav")], "20 channels"),
    C("audio-text-file", "predict.py", lambda w, t: ["-r", w.ckpt, yml(t, "not audio", "text.wav")], "cannot read audio file"),
    C("audio-empty", "predict.py", lambda w, t: ["-r", w.ckpt, wav(t, np.zeros(0), name="empty.wav")], "no samples"),
    C("audio-missing-second-file", "predict.py", lambda w, t: ["-r", w.ckpt, w.clip, t / "missing.wav"], "audio file not found"),
    C("audio-folder", "predict.py", lambda w, t: ["-r", w.ckpt, t], "audio file not found"),
]

CORPUS_LISTS = [  # test.py --data-dir on a damaged copy of the corpus
    C("list-mostly-missing", "test.py", lambda w, t: ["-r", w.ckpt, "--data-dir", corpus_copy(w, t, mostly_missing)], "clips that do not exist"),
    C("list-binary", "test.py", lambda w, t: ["-r", w.ckpt, "--data-dir", corpus_copy(w, t, lambda r: (r / "validation_list.txt").write_bytes(b"\xff\xfe\x00bad"))], "not a readable text list"),
    C("split-all-nan", "test.py", lambda w, t: ["-r", w.ckpt, "--data-dir", corpus_copy(w, t, nan_every("testing_list.txt"))], "test split"),
    C("list-test-without-a-keyword", "test.py", lambda w, t: ["-r", w.ckpt, "--data-dir", corpus_copy(w, t, listed("testing_list.txt", lambda line: not line.startswith("two/")))], "keywords with no clip in a split: test: two; every keyword needs clips"),
    C("corpus-keyword-clips-upper-case", "test.py", lambda w, t: ["-r", w.ckpt, "--data-dir", corpus_copy(w, t, upper_case_suffixes)], "keyword 'one' has no clips"),
    C("corpus-no-words", "test.py", lambda w, t: ["-r", w.ckpt, "--data-dir", t], "holds no word folders"),
    C("corpus-missing", "test.py", lambda w, t: ["-r", w.ckpt, "--data-dir", t / "nowhere"], "does not exist"),
]

SUBPROCESS_CASES = [  # as a user runs them, including train.py runs that fail after their run folder exists
    C("sub-train-resume-other-optimizer", "train.py", lambda w, t: ["-r", w.ckpt, "-c", config_with(w, t, lambda c: c.update(optimizer={"type": "SGD", "args": {"lr": 0.1}}))], "holds the state of optimizer Adam"),
    C("sub-train-diverges", "train.py", lambda w, t: ["-c", w.config, "--lr", "1e30"], "training diverged"),
    C("sub-train-list-mostly-missing", "train.py", lambda w, t: ["-c", w.config, "--data-dir", corpus_copy(w, t, mostly_missing)], "clips that do not exist"),
    C("sub-train-finetune-bad-q", "train.py", lambda w, t: ["-r", w.ckpt, "-q", bad_q(w, t, "fc3", "bits_weights", 64)], "at most 32"),
    C("sub-train-finetune-rate-overflows", "train.py", lambda w, t: ["-r", forged(w, t, lambda c: (c["config"]["optimizer"]["args"].update(lr=1e38), c["config"]["optimization"]["finetuning"].update(lr_factor=1000))), "-q", w.q],
      "the finetuning learning rate, optimization.finetuning.lr_factor (1000) x the float run's rate (1e+38), is 1e+41, outside (0, 1e+38]; change lr_factor or give the rate with --lr"),
    C("sub-train-finetune-stored-rate-string", "train.py", lambda w, t: ["-r", forged(w, t, setter("finetuned_from", value={"base_lr": "x"})), "-q", w.q],
      "the checkpoint's finetuned_from stores the float run's learning rate as 'x', not a number in (0, 1e+38]"),
    C("sub-train-validation-list-without-a-keyword", "train.py", lambda w, t: ["-c", w.config, "--data-dir", corpus_copy(w, t, listed("validation_list.txt", lambda line: not line.startswith("one/")))],
      "keywords with no clip in a split: validation: one; every keyword needs clips in train, validation and test: name some of their clips in validation_list.txt"),
    C("sub-train-every-clip-of-a-keyword-in-validation", "train.py", lambda w, t: ["-c", w.config, "--data-dir", corpus_copy(w, t, every_one_in_validation)],
      "keywords with no clip in a split: train: one; test: one;"),
    C("sub-train-empty-testing-list", "train.py", lambda w, t: ["-c", w.config, "--data-dir", corpus_copy(w, t, listed("testing_list.txt", lambda line: False))],
      "keywords with no clip in a split: test: one, two, three;"),
    C("sub-train-keyword-clips-upper-case", "train.py", lambda w, t: ["-c", w.config, "--data-dir", corpus_copy(w, t, upper_case_suffixes)],
      "holds no *.wav file (8 other file(s), e.g. "),
    C("sub-test-forged-widths", "test.py", lambda w, t: ["-r", forged(w, t, setter("arch_args", "widths", value=[8, 8, 10**12]))], "widths"),
    C("sub-predict-smooth-nan", "predict.py", lambda w, t: ["-r", w.ckpt, w.clip, "--smooth-ms", "nan"], "--smooth-ms"),
    C("sub-predict-nan-clip", "predict.py", lambda w, t: ["-r", w.ckpt, wav(t, np.full(8000, np.inf))], "NaN or infinite samples"),
    C("sub-export-o-run-folder", "export.py", lambda w, t: ["-r", w.ckpt, "-q", w.q, "-o", w.run_dir], "would overwrite the input"),
    C("sub-quantize-bits-64", "profile.py", lambda w, t: ["-r", w.ckpt, "-q", bad_q(w, t, "conv1", "bits_weights", 64)], "at most 32"),
]

IN_PROCESS_CASES = CKPT + SOLUTIONS + OUTPUTS + FLAGS + AUDIO + CORPUS_LISTS


def run_in_process(script, args, capsys):
    """(exit status, stdout, stderr) of ``script``'s main() with ``args``."""
    status = call_main(script, args, run_name="bad_input_case")
    out, err = capsys.readouterr()
    return status, out, err


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



# ---- what bad data must not stop, and the guarantees behind the table -----------------------------

def test_run_folders_are_claimed_exclusively(tmp_path):
    """Many claims of the same run id at once (threads racing on os.mkdir) all get their own."""
    from concurrent.futures import ThreadPoolExecutor
    from parse_config import create_run_dirs
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda _: create_run_dirs(tmp_path, "race", "1129_120000"), range(24)))
    assert len(set(ids)) == 24 and "1129_120000" in ids and "1129_120000_24" in ids
    assert sorted(p.name for p in (tmp_path / "log" / "race").iterdir()) == sorted(ids)


def test_two_trainings_started_at_once_get_two_complete_run_folders(work, tmp_path):
    """Both runs start together; the folders of the coming minute are taken already (empty), so
    both must claim a suffixed name, and each ends with its own complete set of files."""
    from datetime import datetime, timedelta
    config = tiny_config(tmp_path, work.corpus, name="twin", epochs=1)
    cfg = yaml.safe_load(config.read_text())
    cfg["data_loader"]["args"]["cache_dir"] = str(work.tmp / "cache")
    config.write_text(yaml.safe_dump(cfg))
    taken = tmp_path / "saved" / "models" / "twin"
    now = datetime.now()
    for s in range(-2, 600):
        (taken / (now + timedelta(seconds=s)).strftime(r"%m%d_%H%M%S")).mkdir(parents=True, exist_ok=True)
    before = set(p.name for p in taken.iterdir())
    procs = [subprocess.Popen([sys.executable, "train.py", "-c", str(config)], cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    new = sorted(set(p.name for p in taken.iterdir()) - before)
    assert len(new) == 2 and all("_" in name[len("MMDD_HHMMSS"):] for name in new), new
    for name in new:
        files = {p.name for p in (taken / name).iterdir()}
        assert files == {"config.yml", "checkpoint-epoch1.pth", "model_best.pth"}, files
        ckpt = torch.load(taken / name / "model_best.pth", weights_only=True)
        assert ckpt["epoch"] == 1
        logs = {p.name.split(".")[0] for p in (tmp_path / "saved" / "log" / "twin" / name).iterdir()}
        assert logs == {"info", "events"}
        assert f"/{name}/" in "".join(o for o, _ in outputs)   # each run reported its own folder
    assert all(not any((taken / name).iterdir()) for name in before)   # taken folders untouched


def test_nan_clip_and_corrupt_noise_file_are_skipped_with_a_warning(work, tmp_path):
    def edit(root):
        rel = sorted((root / "two").glob("*.wav"))[0]           # a training clip
        samples = np.zeros(16000, dtype=np.float32)
        samples[123] = np.nan
        sf.write(str(rel), samples, 16000, subtype="FLOAT")
        (root / "_background_noise_" / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk")
    corpus = corpus_copy(work, tmp_path, edit)
    config = tiny_config(tmp_path, corpus, name="skip", epochs=1)
    proc = run_script("train.py", "-c", config)
    text = proc.stdout + proc.stderr
    assert "1 unreadable audio file(s) skipped in the train split" in text
    assert "holds NaN or infinite samples" in text
    warnings = [line for line in text.splitlines() if line.startswith("skipping unreadable audio file")]
    assert len(warnings) == 2 and sum("broken.wav" in line for line in warnings) == 1   # each once
    ckpt = torch.load(run_folders(tmp_path, "skip")[-1] / "model_best.pth", weights_only=True)
    assert torch.isfinite(ckpt["normalization"]["mean"]).all() and torch.isfinite(ckpt["normalization"]["std"]).all()
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())


def test_list_lines_are_normalised_and_a_few_missing_ones_are_a_warning(work, tmp_path, caplog):
    from data_loader.corpus import scan_corpus
    reference = scan_corpus(work.corpus)

    def edit(root):
        lines = (root / "testing_list.txt").read_text().split()
        odd = [f"./{line}" if i % 2 else line.replace("/", "//") for i, line in enumerate(lines)]
        (root / "testing_list.txt").write_text("\n".join(odd + ["one/gone.wav"]) + "\n")
    corpus = scan_corpus(corpus_copy(work, tmp_path, edit))
    assert corpus.clips == reference.clips and len(corpus.clips["test"]) == 10
    assert "names 1 clip(s) that do not exist (e.g. one/gone.wav)" in caplog.text


def test_a_long_clip_is_cropped_centred_reading_only_the_frames_needed(tmp_path, monkeypatch):
    import data_loader.audio as audio
    ramp = (np.arange(30 * 8000) % 20000 - 10000).astype(np.float32) / 32768
    path = wav(tmp_path, ramp, rate=8000, name="long.wav", subtype="FLOAT")
    calls = []
    real_read = audio.sf.read
    monkeypatch.setattr(audio.sf, "read", lambda *a, **k: calls.append(k) or real_read(*a, **k))
    wave = audio.read_wave(path, 8000, audio.MAX_CLIP_SECONDS)
    assert calls == [dict(start=10 * 8000, frames=10 * 8000, dtype="float32", always_2d=True)]
    np.testing.assert_array_equal(wave, ramp[10 * 8000:20 * 8000])


def test_header_is_checked_before_any_sample_is_read(tmp_path, monkeypatch):
    import data_loader.audio as audio
    path = with_header_rate(tmp_path, 1, "one_hz.wav")
    monkeypatch.setattr(audio.sf, "read", lambda *a, **k: pytest.fail("samples read before the header check"))
    with pytest.raises(audio.AudioError, match="sample rate 1 Hz is outside the supported 4,000..192,000 Hz"):
        audio.read_wave(path, 16000)


class _StubClassifier:
    sample_rate, clip_samples, class_names = 16000, 16000, ("unknown", "one", "two", "three")
    engine = None   # a float model: the float detector

    def probabilities(self, views):
        p = np.zeros((len(views), 4))
        p[:, 0] = 1.0
        return p


def test_scanning_memory_does_not_grow_with_the_recording(monkeypatch):
    """An hour of audio (230 MB as float32) passes through the scanner in blocks: its peak
    allocation stays a small fraction of that (the posteriors themselves are 1.2 MB)."""
    from app.detection import DetectorSettings, scan_stream
    block = np.full(160000, 0.01, dtype=np.float32)

    def blocks(n):
        for _ in range(n):
            yield block.copy()
    tracemalloc.start()
    try:
        result = scan_stream(_StubClassifier(), blocks(360), DetectorSettings())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.duration_s == 3600.0 and len(result.starts_s) == 35991
    assert peak < 16e6, peak


def test_streamed_scan_equals_the_whole_file_scan(work, tmp_path):
    from app.detection import DetectorSettings, KeywordClassifier, classify, classify_file, read_wave
    classifier = KeywordClassifier.from_checkpoint(work.ckpt)
    noise = np.random.default_rng(1).standard_normal(8000 * 41).astype(np.float32) * 0.05
    for rate, samples in ((16000, np.tile(noise, 2)[:16000 * 33]), (8000, noise)):
        path = wav(tmp_path, samples, rate=rate, name=f"rec{rate}.wav", subtype="PCM_16")
        whole = classify(classifier, read_wave(path, 16000), DetectorSettings())
        streamed = classify_file(classifier, path, DetectorSettings())
        assert streamed.duration_s == whole.duration_s
        assert np.array_equal(streamed.starts_s, whole.starts_s)
        assert np.array_equal(streamed.posteriors, whole.posteriors)
        assert streamed.detections == whole.detections


def test_a_received_checkpoint_writes_only_under_this_project(work, tmp_path):
    outside = tmp_path / "outside"
    ckpt = torch.load(work.ckpt, weights_only=True)
    ckpt["config"]["name"] = "../../escape"
    ckpt["config"]["trainer"].update(save_dir=str(outside), epochs=3)
    ckpt["config"]["data_loader"]["args"].update(cache_dir=str(outside / "cache"), download="v0.02")
    (tmp_path / "inbox").mkdir()
    torch.save(ckpt, tmp_path / "inbox" / "received.pth")
    project = tmp_path / "project"
    project.mkdir()
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), "-r", str(tmp_path / "inbox" / "received.pth")],
                          cwd=project, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not outside.exists()
    runs = list((project / "saved" / "models").iterdir())
    assert [p.name for p in runs] == ["_.._escape"]
    run = next(runs[0].iterdir())
    assert (run / "checkpoint-epoch3.pth").is_file()
    assert any((project / "data" / "cache").glob("train-*.pt"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inbox", "project"]


def test_quantize_into_an_existing_folder_writes_inside_it_and_keeps_the_old_result(work, tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    run_script("quantize.py", "-r", work.ckpt, "-o", folder)
    first = (folder / "quantization.yml").read_bytes()
    run_script("quantize.py", "-r", work.ckpt, "-o", folder)
    assert folder.is_dir() and (folder / "notes.txt").read_text() == "mine"
    backups = sorted(folder.glob("quantization.*.yml"))
    assert len(backups) == 1 and backups[0].read_bytes() == first
    assert len(sorted(folder.glob("quantization.*.png"))) == 1
    assert "layers" in yaml.safe_load((folder / "quantization.yml").read_text())


def test_keep_previous_never_leaves_a_moment_without_the_file(tmp_path):
    from app.workflow import keep_previous
    path = yml(tmp_path, "layers: {}\n", "quantization.yml")
    keep_previous(path)
    backups = list(tmp_path.glob("quantization.*.yml"))
    assert path.read_text() == "layers: {}\n" and len(backups) == 1      # the old one is still in place
    assert backups[0].read_text() == "layers: {}\n"
    keep_previous(path)                                                   # same second: its own name
    assert len(list(tmp_path.glob("quantization.*.yml"))) == 2


def test_stale_temporary_files_of_killed_writers_are_removed(tmp_path):
    from utils import atomic
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    names = {f".model_best.pth.{dead}.abcd1234.tmp": True,          # writer gone
             f".config.yml.{os.getpid()}.abcd1234.tmp": False,      # writer alive (this process)
             ".cache.pt.abcd1234.tmp": False,                       # old naming, recent
             ".old.yml.abcd1234.tmp": True,                         # old naming, older than an hour
             "notes.tmp": False, ".bashrc": False, "model.tmp.yml": False}
    for name in names:
        (tmp_path / name).write_text("x")
    old = (tmp_path / ".old.yml.abcd1234.tmp").stat().st_mtime - 2 * atomic.STALE_SECONDS
    os.utime(tmp_path / ".old.yml.abcd1234.tmp", (old, old))
    (tmp_path / f".kws.{dead}.extract-abcd1234").mkdir()
    (tmp_path / f".kws.{dead}.extract-abcd1234" / "one.wav").write_text("x")
    atomic.write_text(tmp_path / "new.yml", "a: 1\n")                  # the first write there cleans up
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {"new.yml"} | {name for name, stale in names.items() if not stale}


def test_non_finite_normalisation_statistics_are_an_error(work, tmp_path):
    from data_loader.data_loaders import SpeechCommandsDataLoader
    from data_loader.dataset import SplitData
    from utils.errors import UserError
    loader = SpeechCommandsDataLoader(work.corpus, cache_dir=tmp_path, progress=False)
    mel = torch.ones(4, 40, 100)
    mel[2, 5, 7] = float("inf")
    loader._splits["train"] = SplitData(mel, torch.zeros(4, dtype=torch.int64), ["a"] * 4, [])
    with pytest.raises(UserError, match="normalisation statistics .* are not finite"):
        loader.normalization()
