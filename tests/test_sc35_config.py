"""config_lenet5_sc35.yml, the Speech Commands 35-word task (issue 26): the config validates, its
classes are unknown (class 0, empty on Speech Commands), the 35 words of v0.02 and silence; on the
shared corpus, which has too few clips of some words for every split, and on a corpus without
most of the words, train.py stops with one line naming the words, exit 1, nothing written."""
import os

import yaml

from conftest import CORPUS, ROOT, run_script
from tiny import assert_unchanged, snapshot

from configuration.schema import task_classes, validate_config
from data_loader.data_loaders import SpeechCommandsDataLoader
from utils.atomic import read_yaml

WORDS = ("backward bed bird cat dog down eight five follow forward four go happy house learn left marvin nine "
         "no off on one right seven sheila six stop three tree two up visual wow yes zero").split()
COMMANDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]


def test_sc35_config_validates_with_the_35_words_unknown_and_silence():
    config = validate_config(read_yaml(ROOT / "config_lenet5_sc35.yml", "config file"))
    args = config["data_loader"]["args"]
    assert args["keywords"] == WORDS  # yes/no/on/off strings, not YAML booleans
    assert config["arch"]["args"]["num_classes"] == task_classes(args) == 37
    loader = SpeechCommandsDataLoader(**{**args, "data_dir": str(CORPUS), "download": None})  # scans nothing yet
    assert list(loader.class_names) == ["unknown"] + WORDS + ["silence"]


def _config(tmp_path, data_dir):
    cfg = yaml.safe_load((ROOT / "config_lenet5_sc35.yml").read_text())
    cfg["data_loader"]["args"].update(download=None, cache_dir=str(tmp_path / "cache"))
    cfg["trainer"].update(save_dir=str(tmp_path / "saved"), epochs=1, tensorboard=False)
    path = tmp_path / "sc35.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _fails_in_one_line(tmp_path, data_dir):
    before = snapshot(data_dir)
    proc = run_script("train.py", "-c", _config(tmp_path, data_dir), "--data-dir", data_dir, check=False)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    errors = [li for li in proc.stderr.splitlines() if li.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
    assert_unchanged(before, snapshot(data_dir))
    written = [p for p in (tmp_path / "saved").rglob("*") if p.is_file()] if (tmp_path / "saved").exists() else []
    assert written == [] and not (tmp_path / "cache").exists()
    return errors[0]


def _listed_words(name):
    return {line.split("/", 1)[0] for line in (CORPUS / name).read_text().splitlines() if line.strip()}


def test_sc35_on_the_shared_corpus_names_the_words_missing_from_a_split(tmp_path):
    # counted here from the corpus's own lists: every word has training clips there
    gaps = {"validation": [w for w in WORDS if w not in _listed_words("validation_list.txt")],
            "test": [w for w in WORDS if w not in _listed_words("testing_list.txt")]}
    assert gaps == {"validation": ["forward", "visual"],
                    "test": ["backward", "bed", "follow", "forward", "happy", "house", "learn"]}
    error = _fails_in_one_line(tmp_path, CORPUS)
    assert error == (f"error: {CORPUS}: keywords with no clip in a split: validation: forward, visual; "
                     f"test: backward, bed, follow, forward, happy, house, learn; every keyword needs clips in "
                     f"train, validation and test: name some of their clips in validation_list.txt / testing_list.txt "
                     f"(train holds the clips neither names), add recordings of them, or remove them from keywords")


def test_sc35_on_a_corpus_without_most_words_names_every_missing_one(tmp_path):
    """The ten command words only (folders linked from the shared corpus, its lists cut to them)."""
    corpus = tmp_path / "commands"
    corpus.mkdir()
    for word in COMMANDS + ["_background_noise_"]:
        os.symlink(CORPUS / word, corpus / word)
    for name in ("validation_list.txt", "testing_list.txt"):
        lines = [li for li in (CORPUS / name).read_text().splitlines() if li.split("/", 1)[0] in COMMANDS]
        (corpus / name).write_text("".join(f"{li}\n" for li in lines))
    missing = [w for w in WORDS if w not in COMMANDS]
    error = _fails_in_one_line(tmp_path, corpus)
    assert error == (f"error: 25 keywords have no folder <word>/ of clips in {corpus}: {', '.join(missing)}; "
                     f"the folders are {', '.join(sorted(COMMANDS))}")
