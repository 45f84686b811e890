"""A tiny corpus (a handful of real clips copied from the shared corpus into a temporary folder)
and a config that trains on it in seconds: for bad-input and fault tests, which need a trained
run and files to damage, not a good model."""
import hashlib
import shutil
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

from conftest import CORPUS, ROOT, run_script

WORDS = ("one", "two", "three", "bed", "cat")
PER_WORD = 8            # per word: 4 training, 2 validation, 2 test clips


def build_tiny_corpus(dest, words=WORDS):
    """``dest`` in Speech Commands layout: PER_WORD real clips of each of ``words`` and a 12 s noise
    recording; returns dest."""
    dest = Path(dest)
    validation, testing = [], []
    for word in words:
        (dest / word).mkdir(parents=True)
        for i, wav in enumerate(sorted((CORPUS / word).glob("*.wav"))[:PER_WORD]):
            shutil.copyfile(wav, dest / word / wav.name)
            rel = f"{word}/{wav.name}"
            if i in (4, 5):
                validation.append(rel)
            elif i in (6, 7):
                testing.append(rel)
    (dest / "validation_list.txt").write_text("\n".join(validation) + "\n")
    (dest / "testing_list.txt").write_text("\n".join(testing) + "\n")
    (dest / "_background_noise_").mkdir()
    noise = np.random.default_rng(0).standard_normal(12 * 16000).astype(np.float32) * 0.05
    sf.write(str(dest / "_background_noise_" / "white.wav"), noise, 16000, subtype="PCM_16")
    return dest


def tiny_config(tmp, corpus, name="tiny", epochs=2, base="config_lenet5_keywords.yml", **trainer):
    """The ``base`` config (the default's unless told) on ``corpus``, saving under ``tmp/saved``, a
    few small epochs."""
    tmp = Path(tmp)
    cfg = yaml.safe_load((ROOT / base).read_text())
    cfg["name"] = name
    cfg["data_loader"]["args"].update(data_dir=str(corpus), cache_dir=str(tmp / "cache"), batch_size=8,
                                      background_noise={"train": 8, "validation": 0, "test": 0})
    cfg["lr_scheduler"]["args"]["T_max"] = epochs
    cfg["trainer"].update(save_dir=str(tmp / "saved"), epochs=epochs, save_period=1, distillation=None, **trainer)
    cfg["optimization"]["finetuning"]["epochs"] = 1
    cfg["detector"]["stream_hours"] = 0.01   # the shortest stream: every clip of the split once
    path = tmp / f"{name}.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_folders(tmp, name="tiny"):
    folder = Path(tmp) / "saved" / "models" / name
    return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def snapshot(*roots):
    """{path: (size, mtime_ns, sha256)} of every file under ``roots``."""
    state = {}
    for root in roots:
        root = Path(root)
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for p in files:
            st = p.stat()
            state[p] = (st.st_size, st.st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
    return state


def assert_unchanged(before, after):
    """Every file that existed before still exists with the same size, time and content."""
    changed = [str(p) for p, v in before.items() if after.get(p) != v]
    assert not changed, f"files changed or lost: {changed}"


def quantized_tiny_run(tmp, words=WORDS, base="config_lenet5_keywords.yml", features=None):
    """A 2-epoch run on the tiny corpus (of ``words``) with the ``base`` config (its features
    updated with ``features`` if given) and its quantization.yml with every group at 8 bits (the C
    export needs all of them in fixed point): (corpus, config path, run folder)."""
    tmp = Path(tmp)
    corpus = build_tiny_corpus(tmp / "corpus", words)
    config = tiny_config(tmp, corpus, base=base)
    cfg = yaml.safe_load(config.read_text())
    cfg["data_loader"]["args"]["features"].update(features or {})
    cfg["optimization"]["quantization"] = {"error_margin": 99, "schedule": [8], "bits_accumulator": 32}
    config.write_text(yaml.safe_dump(cfg))
    run_script("train.py", "-c", config)
    run_dir = run_folders(tmp)[-1]
    run_script("quantize.py", "-r", run_dir / "model_best.pth")
    return corpus, config, run_dir
