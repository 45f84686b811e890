"""Which clips a corpus in Speech Commands layout holds, and in which split and class.

Layout: ``<root>/<word>/<file>.wav``, ``_background_noise_/*.wav``, ``validation_list.txt`` and
``testing_list.txt`` (``word/file.wav`` a line); every clip not listed is training data.
Class 0 is every word that is not a keyword (and background noise); keyword i is class i + 1.
With a silence class (the Speech Commands 12-class task) it is the last class, after the keywords
(``class_names``), and class 0 holds the unknown words only.

A folder of ``<word>/*.wav`` with neither list is split by the Speech Commands rule
(``split_by_hash``): the SHA-1 of the file name's speaker part (before ``_nohash_``, or the whole
name) puts 10% of the speakers in validation and 10% in test; the lists are written under
``split_dir`` (the cache), never into the user's folder.

List lines are normalised (``./word/x.wav``, ``word//x.wav`` and ``word\\x.wav`` all name
``word/x.wav``). A list naming clips that do not exist is a warning with their count; when more
than half of a list's lines name no clip, the list cannot describe this corpus and the scan is a
UserError (a silently empty test split would make every later figure meaningless).
"""
import hashlib
import logging
import os
import re
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from utils import atomic
from utils.errors import UserError

SPLITS = ("train", "validation", "test")
NOISE_FOLDER = "_background_noise_"
MAX_MISSING_FRACTION = 0.5
UNKNOWN, SILENCE = "unknown", "silence"
RESERVED = (UNKNOWN, SILENCE, "_unknown_", "_silence_")  # class names no keyword may take
MAX_NUM_WAVS_PER_CLASS = 2 ** 27 - 1  # Speech Commands' input_data.which_set constant
HASH_PERCENT = {"validation": 10.0, "test": 10.0}

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Corpus:
    root: Path
    keywords: tuple
    clips: dict        # split -> list of (relative path, label), sorted by path
    noise_files: tuple  # relative paths of background-noise recordings, sorted


def class_names(keywords: Iterable[str], silence: bool = False) -> tuple[str, ...]:
    """The name of every class by index: 'unknown', the keywords, then 'silence' when it is a class."""
    return (UNKNOWN,) + tuple(keywords) + ((SILENCE,) if silence else ())


def split_by_hash(name: str) -> str:
    """The Speech Commands rule (input_data.which_set of its README): the split of a clip from the
    SHA-1 of its file name without the ``_nohash_`` part, so a speaker's clips stay together."""
    base = re.sub(r"_nohash_.*$", "", posixpath.basename(name))
    percent = ((int(hashlib.sha1(base.encode("utf-8", "surrogateescape")).hexdigest(), 16) % (MAX_NUM_WAVS_PER_CLASS + 1))
               * (100.0 / MAX_NUM_WAVS_PER_CLASS))
    if percent < HASH_PERCENT["validation"]:
        return "validation"
    if percent < HASH_PERCENT["validation"] + HASH_PERCENT["test"]:
        return "test"
    return "train"


def _write_hash_lists(root, rels, split_dir, keywords):
    """Split the clips of a folder without lists by the hash rule, write the two lists under
    ``split_dir`` (atomically) and print clips per class and split; a keyword with no clip in a
    split is a UserError saying what is needed."""
    splits = {rel: split_by_hash(rel) for rel in rels}
    counts = {}
    for rel, split in splits.items():
        word = rel.split("/", 1)[0]
        counts.setdefault(word, dict.fromkeys(SPLITS, 0))[split] += 1
    for word in keywords:
        empty = [s for s in SPLITS if counts.get(word, {}).get(s, 0) == 0]
        if empty:
            total = sum(counts.get(word, {}).values())
            raise UserError(f"keyword '{word}' has {total} clip(s) in {root} and none falls in the {empty[0]} "
                            f"split: the Speech Commands rule sends 10% of the speakers (file-name part before "
                            f"_nohash_) to validation and 10% to test, so record at least 1 clip in each split, "
                            f"in practice 20 or more clips from 10 or more speakers per word")
    folder = Path(split_dir) / "splits" / hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    for split, file in (("validation", "validation_list.txt"), ("test", "testing_list.txt")):
        atomic.write_text(folder / file, "".join(f"{r}\n" for r in sorted(rels) if splits[r] == split))
    print(f"{root} has no validation_list.txt / testing_list.txt: split by the Speech Commands hash rule, "
          f"lists written to {folder}")
    print(f"  {'word':<16}{'train':>7}{'valid':>7}{'test':>7}")
    for word in sorted(counts):
        c = counts[word]
        print(f"  {word:<16}{c['train']:>7}{c['validation']:>7}{c['test']:>7}")
    return folder


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


def scan_corpus(root: str | os.PathLike, keywords: Iterable[str] = ("one", "two", "three"),
                split_dir: str | os.PathLike | None = None) -> Corpus:
    """Index ``root``; raises UserError when the folder is missing or holds no word folders.
    ``split_dir``: where the lists of a folder without them go (None: such a folder keeps every
    clip in training, as before)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"data folder {root} does not exist; set data_loader.args.data_dir in the "
                        f"config or pass --data-dir PATH to a corpus in Speech Commands layout")
    keywords = tuple(keywords)
    words = sorted(e.name for e in _entries(root)
                   if e.is_dir() and e.name != NOISE_FOLDER and not e.name.startswith("."))
    if not words:
        raise UserError(f"data folder {root} holds no word folders (<word>/*.wav); "
                        f"is it a corpus in Speech Commands layout?")
    list_dir = root
    if (split_dir is not None and not (root / "validation_list.txt").is_file()
            and not (root / "testing_list.txt").is_file()):
        rels = [f"{w}/{e.name}" for w in words for e in _entries(root / w) if e.name.endswith(".wav")]
        _check_words(root, sorted({r.split("/", 1)[0] for r in rels}), keywords)  # before any list is written
        list_dir = _write_hash_lists(root, rels, split_dir, keywords)
    validation = _read_list(list_dir / "validation_list.txt")
    testing = _read_list(list_dir / "testing_list.txt")
    clips = {s: [] for s in SPLITS}
    existing = set()
    for word in words:
        label = keywords.index(word) + 1 if word in keywords else 0
        # names as strings (os.scandir): sorting tens of thousands of Paths costs a second
        for name in sorted(e.name for e in _entries(root / word) if e.name.endswith(".wav")):
            rel = f"{word}/{name}"
            existing.add(rel)
            split = "validation" if rel in validation else "test" if rel in testing else "train"
            clips[split].append((rel, label))
    _check_listed(list_dir / "validation_list.txt", validation, existing)
    _check_listed(list_dir / "testing_list.txt", testing, existing)
    noise_dir = root / NOISE_FOLDER
    noise = tuple(sorted(f"{NOISE_FOLDER}/{e.name}" for e in _entries(noise_dir) if e.name.endswith(".wav"))
                  ) if noise_dir.is_dir() else ()
    return Corpus(root=root, keywords=keywords, clips=clips, noise_files=noise)


def _entries(folder: str | os.PathLike) -> list[os.DirEntry]:
    """The entries of ``folder`` (os.scandir); a folder that cannot be listed (no permission) is a
    one-line UserError saying so, not a traceback nor, for the noise folder, silently no noise."""
    try:
        with os.scandir(folder) as entries:
            return list(entries)
    except OSError as e:
        raise UserError(f"cannot read the folder {folder}: {e.strerror or type(e).__name__}; check its "
                        f"permissions") from None


def check_words(corpus: Corpus) -> Corpus:
    """``corpus`` if every keyword has clips, there is more than one word and every split that
    holds clips holds clips of every keyword (what a training run needs; ``scan_corpus`` itself
    indexes any folder), else a UserError."""
    _check_words(corpus.root, sorted({rel.split("/", 1)[0] for rows in corpus.clips.values() for rel, _ in rows}),
                 corpus.keywords)
    _check_splits(corpus)
    return corpus


def _check_splits(corpus):
    """A keyword without a clip in a split would be left out of training, of model selection or
    of the test silently (a keyword-less model, a recall of nan): a UserError naming every such
    word by split. A split the lists leave empty (an empty testing_list.txt, a validation list
    naming every clip) lacks every keyword."""
    gaps = []
    for split in SPLITS:
        labels = {label for _, label in corpus.clips[split]}
        absent = [w for i, w in enumerate(corpus.keywords, 1) if i not in labels]
        if absent:
            gaps.append(f"{split}: {', '.join(absent)}")
    if gaps:
        raise UserError(f"{corpus.root}: keywords with no clip in a split: {'; '.join(gaps)}; every keyword needs "
                        f"clips in train, validation and test: name some of their clips in validation_list.txt / "
                        f"testing_list.txt (train holds the clips neither names), add recordings of them, or "
                        f"remove them from keywords")


def _check_words(root, words, keywords):
    if len(words) < 2:
        raise UserError(f"{root} holds {'one word folder (' + words[0] + ') only' if words else 'no clips'}; "
                        f"a keyword spotter needs at least two words: the keyword(s) and other words (unknown)")
    missing = [w for w in keywords if w not in words]
    if len(missing) == 1 and (root / missing[0]).is_dir():   # a folder, but no clip in it
        others = sorted(e.name for e in _entries(root / missing[0]))
        found = (f" ({len(others)} other file(s), e.g. {others[0]}: clip names must end in .wav, lower case)"
                 if others else "")
        raise UserError(f"keyword '{missing[0]}' has no clips: {root}/{missing[0]}/ holds no *.wav file{found}; "
                        f"put its recordings there or remove it from keywords")
    if len(missing) == 1:
        raise UserError(f"keyword '{missing[0]}' has no folder {root}/{missing[0]}/ of clips; the folders are "
                        f"{', '.join(words)}")
    if missing:
        raise UserError(f"{len(missing)} keywords have no folder <word>/ of clips in {root}: {', '.join(missing)}; "
                        f"the folders are {', '.join(words)}")


def speech_commands_task(corpus: Corpus, silence_share: float = 0.0, unknown_share: float | None = None,
                         seed: int = 0) -> tuple[Corpus, dict[str, int]]:
    """The Speech Commands 12-class set-up on ``corpus``: in every split the unknown words
    (class 0) sampled to ``unknown_share`` times the mean clips of a keyword (None: all of them,
    seeded by ``seed``), and the number of silence clips, ``silence_share`` times that mean.
    Returns (corpus, {split: silence clips}); a silence share without noise recordings is a UserError."""
    if silence_share and not corpus.noise_files:
        raise UserError(f"task.silence_share is {silence_share} but {corpus.root} has no {NOISE_FOLDER}/*.wav "
                        f"to cut silence clips from; add the noise recordings or set silence_share: 0")
    clips, silence = {}, {}
    for index, split in enumerate(SPLITS):
        rows = corpus.clips[split]
        keyword_rows = [r for r in rows if r[1] != 0]
        mean = len(keyword_rows) / max(len(corpus.keywords), 1)
        unknown = [r for r in rows if r[1] == 0]
        if unknown_share is not None:
            n = min(len(unknown), int(round(unknown_share * mean)))
            pick = np.random.default_rng([seed, index, 26]).permutation(len(unknown))[:n]
            unknown = [unknown[i] for i in sorted(pick)]
        clips[split] = sorted(keyword_rows + unknown)
        silence[split] = int(round(silence_share * mean))
    return Corpus(corpus.root, corpus.keywords, clips, corpus.noise_files), silence
