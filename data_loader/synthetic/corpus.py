"""The synthetic corpus on disk: which word each clip says, by whom, in which split; built in a
hidden sibling folder and renamed into place when complete, or reused when already there."""
import multiprocessing
import os
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from data_loader.synthetic import clips
from data_loader.synthetic.clips import to_int16, write_wav
from data_loader.synthetic.lexicon import CONFUSABLE, CONFUSABLE_WEIGHT, KEYWORDS, WORDS
from data_loader.synthetic.noise import NOISE_FILES, make_noise
from data_loader.synthetic.voices import draw_speaker
from utils import yaml_reader
from utils.atomic import write_text, write_yaml
from utils.errors import UserError
from utils.progress import progress_bar

GENERATOR_VERSION = 2
MARKER = ".complete"
NOISE_FOLDER = "_background_noise_"
CLIPS_PER_SPEAKER = 12
SPLIT_FRACTION = 0.1  # of speakers, for validation and for testing each


def _largest_remainder(total, weights):
    weights = np.asarray(weights, dtype=float)
    exact = total * weights / weights.sum()
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: total - counts.sum()]:
        counts[i] += 1
    return counts


def plan_corpus(n_clips: int, seed: int, keyword_fraction: float) -> list[tuple[int, str, str, dict[str, Any], str, str]]:
    """Which word each clip says, by which speaker, in which split: a list of (index, word,
    relative path, speaker params, split, speaker id). A pure function of its arguments."""
    rng = np.random.default_rng([seed, 0])
    n_kw = int(round(n_clips * keyword_fraction))
    kw_counts = _largest_remainder(n_kw, [1, 1, 1])
    others = [w for w in WORDS if w not in KEYWORDS]
    other_counts = _largest_remainder(n_clips - n_kw, [CONFUSABLE_WEIGHT if w in CONFUSABLE else 1.0
                                                       for w in others])
    words = [w for w, c in zip(KEYWORDS, kw_counts) for _ in range(c)]
    words += [w for w, c in zip(others, other_counts) for _ in range(c)]
    words = [words[i] for i in rng.permutation(len(words))]

    n_speakers = max(10, int(round(n_clips / CLIPS_PER_SPEAKER)))
    ids = []
    while len(ids) < n_speakers:
        sid = f"{int(rng.integers(0, 2 ** 32)):08x}"
        if sid not in ids:
            ids.append(sid)
    speakers = [draw_speaker(np.random.default_rng([seed, 1, i])) for i in range(n_speakers)]
    order = rng.permutation(n_speakers)
    n_held = max(1, int(round(SPLIT_FRACTION * n_speakers)))
    split_of = {}
    for rank, s in enumerate(order):
        split_of[s] = "validation" if rank < n_held else "testing" if rank < 2 * n_held else "training"
    speaker_of_clip = np.arange(n_clips) % n_speakers
    speaker_of_clip = speaker_of_clip[rng.permutation(n_clips)]
    seen = Counter()
    plan = []
    for i, (word, s) in enumerate(zip(words, speaker_of_clip)):
        k = seen[(s, word)]
        seen[(s, word)] += 1
        rel = f"{word}/{ids[s]}_nohash_{k}.wav"
        plan.append((i, word, rel, speakers[s], split_of[s], ids[s]))
    return plan


def _summarize(plan):
    words = Counter(p[1] for p in plan)
    splits = Counter(p[4] for p in plan)
    per_split = {s: {"clips": splits.get(s, 0),
                     "speakers": len({p[5] for p in plan if p[4] == s}),
                     **{w: sum(1 for p in plan if p[4] == s and p[1] == w) for w in KEYWORDS}}
                 for s in ("training", "validation", "testing")}
    return {"clips": len(plan), "words": dict(sorted(words.items())),
            "keywords": {w: words.get(w, 0) for w in KEYWORDS},
            "unknown": sum(c for w, c in words.items() if w not in KEYWORDS),
            "speakers": len({p[5] for p in plan}), "splits": per_split}


def _readme(params, summary) -> str:
    return (
        "# Synthetic keyword corpus (not real speech)\n\n"
        "Made by `python3 -m data_loader.synthetic`: formant-synthesised word-like sounds, laid out\n"
        "like Google Speech Commands (`<word>/<speaker>_nohash_<n>.wav`, `_background_noise_/`,\n"
        "`validation_list.txt`, `testing_list.txt`; every other clip is training data).\n"
        "Splits are speaker-disjoint. Use it to exercise the pipeline offline; accuracy on it says\n"
        "little about accuracy on real recordings.\n\n"
        f"Parameters: {params}\n\n"
        f"{summary['clips']} clips from {summary['speakers']} synthetic speakers; "
        f"keywords {summary['keywords']}, other words {summary['unknown']}.\n"
    )


def _stale_partials(root):
    """Leftover build folders of runs that died (their process no longer exists)."""
    for p in root.parent.glob(f".{root.name}.partial-*"):
        try:
            pid = int(p.name.rsplit("-", 2)[-2])
            os.kill(pid, 0)
        except ProcessLookupError:
            yield p
        except (ValueError, IndexError, PermissionError):
            continue


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _check_args(n_clips, seed, sample_rate, keyword_fraction):
    if not isinstance(n_clips, (int, np.integer)) or n_clips < 30:
        raise UserError(f"--clips must be a whole number of at least 30, got {n_clips!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"--seed must be a whole number >= 0, got {seed!r}")
    if not isinstance(sample_rate, (int, np.integer)) or not 8000 <= sample_rate <= 48000:
        raise UserError(f"sample rate must be a whole number of Hz from 8000 to 48000, got {sample_rate!r}")
    if not 0 < keyword_fraction < 1:
        raise UserError(f"keyword fraction must be between 0 and 1 (exclusive), got {keyword_fraction!r}")


def generate_corpus(root: str | os.PathLike, n_clips: int = 4000, seed: int = 0, sample_rate: int = 16000,
                    keyword_fraction: float = 0.3, progress: bool = True, *,
                    workers: int | None = None) -> dict[str, Any]:
    """Write a synthetic corpus at ``root`` (or reuse a complete one); return its summary.

    ``workers``: processes to use (default: 2, or 1 for small corpora); the output does not
    depend on it.
    """
    _check_args(n_clips, seed, sample_rate, keyword_fraction)
    root = Path(root)
    params = {"generator_version": GENERATOR_VERSION, "n_clips": int(n_clips), "seed": int(seed),
              "sample_rate": int(sample_rate), "keyword_fraction": float(keyword_fraction)}
    if (root / MARKER).is_file():
        return _reuse(root, params)
    if root.exists():
        if root.is_dir() and not any(root.iterdir()):
            root.rmdir()
        else:
            raise UserError(f"{root} exists but is not a complete synthetic corpus (no {MARKER} "
                            f"marker); delete it or choose another --out folder")
    root.parent.mkdir(parents=True, exist_ok=True)
    for stale in _stale_partials(root):
        shutil.rmtree(stale, ignore_errors=True)

    plan = plan_corpus(n_clips, seed, keyword_fraction)
    summary = _summarize(plan)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.partial-{os.getpid()}-", dir=root.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; the corpus should not be
    tasks = [(i, word, rel, speaker, seed) for i, word, rel, speaker, _, _ in plan]
    workers = workers or (1 if n_clips < 600 else 2)
    bar = progress_bar(enabled=progress, total=len(NOISE_FILES) + len(tasks), unit="file", desc="synthesising")
    try:
        with bar:
            noise_dir = tmp / NOISE_FOLDER
            noise_dir.mkdir()
            noises = []
            for k, (name, seconds) in enumerate(NOISE_FILES):
                x = make_noise(name, seconds, np.random.default_rng([seed, 3, k]), sample_rate)
                write_wav(noise_dir / f"{name}.wav", to_int16(x), sample_rate)
                noises.append((x / np.std(x)).astype(np.float32))
                bar.update()
            for word in sorted({p[1] for p in plan}):
                (tmp / word).mkdir()
            if workers == 1:
                clips.init_worker(tmp, sample_rate, noises)
                try:
                    for task in tasks:
                        clips.render_task(task)
                        bar.update()
                finally:
                    clips.WORKER.clear()
            else:
                ctx = multiprocessing.get_context("spawn")  # safe even after torch started threads
                init = (str(tmp), sample_rate, noises)
                with ctx.Pool(workers, initializer=clips.init_worker, initargs=init) as pool:
                    for _ in pool.imap_unordered(clips.render_task, tasks, chunksize=16):
                        bar.update()
        by_path = sorted(plan, key=lambda p: p[2])
        for split, fname in (("validation", "validation_list.txt"), ("testing", "testing_list.txt")):
            write_text(tmp / fname, "".join(f"{p[2]}\n" for p in by_path if p[4] == split))
        write_text(tmp / "README.md", _readme(params, summary))
        write_yaml(tmp / MARKER, {**params, "summary": summary})
        for name in ("validation_list.txt", "testing_list.txt", "README.md", MARKER):
            os.chmod(tmp / name, 0o666 & ~_umask())  # atomic writes leave mkstemp's private mode
        try:
            os.rename(tmp, root)
        except OSError:
            if (root / MARKER).is_file():  # another run finished first
                shutil.rmtree(tmp, ignore_errors=True)
                return _reuse(root, params)
            raise UserError(f"cannot move the new corpus into {root} (it appeared meanwhile?); "
                            f"delete {root} and run again") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"root": str(root), "reused": False, **params, **summary}


def _reuse(root, params):
    try:
        marker = yaml_reader.loads((root / MARKER).read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, OSError, UnicodeDecodeError):
        raise UserError(f"{root / MARKER} is unreadable; delete {root} and generate the corpus again") from None
    if not isinstance(marker, dict) or "summary" not in marker:
        raise UserError(f"{root} has a {MARKER} marker that is not a synthetic corpus's; "
                        f"choose another --out folder")
    if marker.get("generator_version") != GENERATOR_VERSION:
        raise UserError(f"{root} was made by version {marker.get('generator_version')} of the synthetic "
                        f"generator, whose clips differ from this version's ({GENERATOR_VERSION}); "
                        f"delete {root} and run again, or choose another --out folder")
    old = {k: marker.get(k) for k in params}
    if old != params:
        print(f"note: {root} was generated with {old}, not {params}; using it as it is "
              f"(delete it to regenerate)", file=sys.stderr)
    return {"root": str(root), "reused": True, **old, **marker["summary"]}


def summary_line(summary: Mapping[str, Any]) -> str:
    s = summary["splits"]
    kw = ", ".join(f"{w} {c}" for w, c in summary["keywords"].items())
    verb = "reused" if summary.get("reused") else "wrote"
    return (f"{verb} synthetic corpus {summary['root']}: {summary['clips']} clips ({kw}, other words "
            f"{summary['unknown']}) from {summary['speakers']} speakers; train "
            f"{s['training']['clips']} / validation {s['validation']['clips']} / "
            f"test {s['testing']['clips']}")
