"""Which clips a corpus in Speech Commands layout holds, and in which split and class.

Layout: ``<root>/<word>/<file>.wav``, ``_background_noise_/*.wav``, ``validation_list.txt`` and
``testing_list.txt`` (``word/file.wav`` a line); every clip not listed is training data.
Class 0 is every word that is not a keyword (and background noise); keyword i is class i + 1.

List lines are normalised (``./word/x.wav``, ``word//x.wav`` and ``word\\x.wav`` all name
``word/x.wav``). A list naming clips that do not exist is a warning with their count; when more
than half of a list's lines name no clip, the list cannot describe this corpus and the scan is a
UserError (a silently empty test split would make every later figure meaningless).
"""
import logging
import os
import posixpath
from dataclasses import dataclass
from pathlib import Path

from utils.errors import UserError

SPLITS = ("train", "validation", "test")
NOISE_FOLDER = "_background_noise_"
MAX_MISSING_FRACTION = 0.5

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Corpus:
    root: Path
    keywords: tuple
    clips: dict        # split -> list of (relative path, label), sorted by path
    noise_files: tuple  # relative paths of background-noise recordings, sorted


def _normalise(line):
    return posixpath.normpath(line.strip().replace("\\", "/"))


def _read_list(path):
    if not path.is_file():
        return set()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is not a readable text list ({type(e).__name__}); "
                        f"it should hold one word/file.wav a line") from None
    return {_normalise(line) for line in text.splitlines() if line.strip()}


def _check_listed(path, listed, existing):
    """Warn about, or refuse, list lines that name no clip of the corpus."""
    missing = listed - existing
    if not missing:
        return
    if len(missing) > MAX_MISSING_FRACTION * len(listed):
        raise UserError(f"{path} names {len(missing)} of {len(listed)} clips that do not exist "
                        f"(e.g. {sorted(missing)[0]}); is it the list of another corpus?")
    log.warning("%s names %d clip(s) that do not exist (e.g. %s); they are ignored",
                path, len(missing), sorted(missing)[0])


def scan_corpus(root, keywords=("one", "two", "three")):
    """Index ``root``; raises UserError when the folder is missing or holds no word folders."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"data folder {root} does not exist; set data_loader.args.data_dir in the "
                        f"config or pass --data-dir PATH to a corpus in Speech Commands layout")
    keywords = tuple(keywords)
    words = sorted(p.name for p in root.iterdir()
                   if p.is_dir() and p.name != NOISE_FOLDER and not p.name.startswith("."))
    if not words:
        raise UserError(f"data folder {root} holds no word folders (<word>/*.wav); "
                        f"is it a corpus in Speech Commands layout?")
    validation = _read_list(root / "validation_list.txt")
    testing = _read_list(root / "testing_list.txt")
    clips = {s: [] for s in SPLITS}
    existing = set()
    for word in words:
        label = keywords.index(word) + 1 if word in keywords else 0
        # names as strings (os.scandir): sorting tens of thousands of Paths costs a second
        for name in sorted(e.name for e in os.scandir(root / word) if e.name.endswith(".wav")):
            rel = f"{word}/{name}"
            existing.add(rel)
            split = "validation" if rel in validation else "test" if rel in testing else "train"
            clips[split].append((rel, label))
    _check_listed(root / "validation_list.txt", validation, existing)
    _check_listed(root / "testing_list.txt", testing, existing)
    noise_dir = root / NOISE_FOLDER
    noise = tuple(sorted(f"{NOISE_FOLDER}/{p.name}" for p in noise_dir.glob("*.wav"))) if noise_dir.is_dir() else ()
    return Corpus(root=root, keywords=keywords, clips=clips, noise_files=noise)
