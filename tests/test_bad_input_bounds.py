"""Issue 25's hostile inputs, each a named case: values bounded before any work (the config
schema, a checkpoint's stored config, predict's flags), YAML of refused shapes, corpus files that
are not regular files, checkpoints with a flipped bit or a sparse tensor. Each ends in a one-line
UserError (or, for a corpus file, a skipped clip) and none hangs; all run in this process."""
import errno
import os
import socket
import zipfile

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from app.detection import DetectorSettings
from conftest import ROOT
from configuration.schema import validate_config, validate_stored_loader
from data_loader.audio import AudioError, read_wave, shown
from parse_config import ConfigParser, create_run_dirs
from utils import atomic, yaml_reader
from utils.checkpoint import load_checkpoint
from utils.checkpoint_checks import validate_checkpoint
from utils.errors import UserError


def default_config():
    return yaml.safe_load((ROOT / "config_lenet5_keywords.yml").read_text())


def one_line_error(call):
    with pytest.raises(UserError) as error:
        call()
    message = str(error.value)
    assert "\n" not in message and "\r" not in message and "\x1b" not in message, message
    return message


def config_error(change):
    cfg = default_config()
    change(cfg)
    return one_line_error(lambda: validate_config(cfg))


def features(**values):
    def change(cfg):
        cfg["data_loader"]["args"].setdefault("features", {}).update(values)
    return change


def section(*keys, **values):
    def change(cfg):
        node = cfg
        for key in keys:
            if node.get(key) is None:
                node[key] = {}
            node = node[key]
        node.update(values)
    return change


# ---- 1. run names and save_dir (the name used to make train.py loop forever) -----------------------

@pytest.mark.parametrize("name", ["../../../escape", "/abs/path", "a/b", "a\\b", ".", "..", "x" * 101,
                                  "new\nline", " padded", ""], ids=[
    "parent-escape", "absolute", "separator", "backslash", "dot", "dotdot", "too-long", "newline", "padded",
    "empty"])
def test_a_run_name_must_be_one_safe_folder_name(name):
    message = config_error(lambda c: c.update(name=name))
    assert message.startswith("config name must be ")   # the empty name: "a non-empty string"


def test_a_name_of_100_characters_is_accepted():
    cfg = default_config()
    cfg["name"] = "n" * 100
    assert validate_config(cfg)["name"] == "n" * 100


def test_a_save_dir_that_is_a_file_or_lies_under_one_is_refused_before_any_folder_exists(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("keep me")
    for save_dir in (blocker, blocker / "below"):
        cfg = default_config()
        cfg["trainer"]["save_dir"] = str(save_dir)
        message = one_line_error(lambda cfg=cfg: ConfigParser(cfg, run_id="r1"))
        assert f"{blocker} is not a folder" in message
    assert blocker.read_text() == "keep me" and sorted(os.listdir(tmp_path)) == ["file"]


def test_a_file_where_the_run_folders_go_is_named_in_one_line_and_kept(tmp_path):
    (tmp_path / "log").write_text("keep me")   # e.g. a shell's `> save_dir/log` beside the runs
    message = one_line_error(lambda: create_run_dirs(tmp_path, "run", "0101_000000"))
    assert message == f"{tmp_path / 'log'} exists and is not a folder; choose another path"
    assert (tmp_path / "log").read_text() == "keep me"


def test_a_write_under_a_file_is_a_one_line_error():
    from utils.atomic import write_failure
    error = write_failure(NotADirectoryError(errno.ENOTDIR, "Not a directory"), "/x/f/out.yml")
    assert str(error) == ("cannot write /x/f/out.yml: Not a directory; a part of that path is a file, "
                          "not a folder: choose another path")


def test_models_and_log_leading_to_one_folder_end_in_an_error_not_a_loop(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "log").symlink_to(tmp_path / "models")
    message = one_line_error(lambda: create_run_dirs(tmp_path, "run", "0101_000000"))
    assert "1000 names taken" in message and "lead to the same folder" in message


# ---- 2. YAML shapes ---------------------------------------------------------------------------------

BOMB = "".join(f"{c}: &{c} [{', '.join([f'*{p}' if p else 'x'] * 9)}]\n"
               for p, c in zip(["", "a", "b", "c", "d", "e", "f"], "abcdefg"))


@pytest.mark.parametrize("text, message", [
    (BOMB, "more than 100,000 values once aliases (*name) are expanded"),
    ("a: &a {x: 1}\nb:\n  <<: *a\n", "merge keys (<<) are not accepted (line 3)"),
    ("layers: 1\nlayers: 2\n", "key 'layers' is given twice (line 2); keep one"),
    ('"a\\nb": 1\n"a\\nb": 2\n', "key 'a\\nb' is given twice"),
    ("[" * 10_000 + "]" * 10_000, "nesting deeper than 32 levels (line 1)"),
    ("&a [*a]", "an alias refers to a node that contains it"),
    ("a: &a [[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]\nb: [[[[[[[[[[[[[[*a]]]]]]]]]]]]]]\n",
     "nesting deeper than 32 levels once aliases (*name) are expanded"),
    ("pruned_filters: {conv1: [" + "9" * 5000 + "]}", "an integer of 5000 digits (line 1); at most 30 are read"),
], ids=["alias-bomb", "merge-key", "duplicate-key", "duplicate-key-with-newline", "deep-nesting",
        "recursive-alias", "deep-through-alias", "5000-digit-integer"])
def test_yaml_of_a_refused_shape_is_a_one_line_error(tmp_path, text, message):
    path = tmp_path / "file.yml"
    path.write_text(text)
    error = one_line_error(lambda: atomic.read_yaml(path, "pruning solution"))
    assert error.startswith(f"pruning solution {path} is not valid YAML (") and message in error, error


def test_yaml_over_the_size_limit_is_refused_before_it_is_parsed(tmp_path):
    path = tmp_path / "big.yml"
    path.write_text("a: " + "x" * yaml_reader.MAX_BYTES + "\n")
    assert "bytes, above the 1,048,576 a YAML file here may hold" in one_line_error(
        lambda: atomic.read_yaml(path, "config file"))


def test_a_few_shared_values_and_our_own_writes_read_back():
    shared = {"bits": 8}
    text = yaml.safe_dump({"a": shared, "b": shared})   # PyYAML writes an anchor and an alias
    assert "&" in text and yaml_reader.loads(text) == {"a": {"bits": 8}, "b": {"bits": 8}}
    assert "&" not in yaml_reader.dumps({"a": shared, "b": shared})


def test_a_text_read_again_gives_an_equal_copy_and_a_bad_one_fails_again():
    """loads() keeps the values of the texts it read last: a text read again gives a value equal
    to the first (a copy, shared values still shared), and a refused text is refused every time."""
    text = "layers: {conv1: {bits_weights: 4, il_weights: 0}}\nsweep: &s [1, 2]\nagain: *s\nn: 7\n"
    first = yaml_reader.loads(text)
    first["layers"]["conv1"]["bits_weights"] = 99
    first["sweep"].append(3)
    second = yaml_reader.loads(text)
    assert second == {"layers": {"conv1": {"bits_weights": 4, "il_weights": 0}}, "sweep": [1, 2], "again": [1, 2],
                      "n": 7}
    assert second["sweep"] is second["again"] and second is not yaml_reader.loads(text)
    twice = "a: 1\na: 2\n"
    for _ in range(2):
        with pytest.raises(yaml_reader.YAMLShapeError, match="given twice"):
            yaml_reader.loads(twice)
    for i in range(yaml_reader.MEMO_TEXTS + 2):   # older texts make way, later reads still right
        assert yaml_reader.loads(f"k: {i}\n") == {"k": i}
    assert yaml_reader.loads(text) == second


def test_an_unknown_key_with_a_newline_and_an_escape_sequence_gives_one_escaped_line():
    message = config_error(lambda c: c["trainer"].update({"ep\nochs\x1b[31m": 1}))
    assert message.startswith("config key trainer.ep\\nochs\\x1b[31m is not known")


# ---- 3. bounds: features, counts, seeds, shifts, optimizers, schedulers ------------------------------

BOUND_CASES = [
    ("win-length-above-n-fft", features(n_fft=256, win_length=400), "win_length exceeds n_fft"),
    ("n-fft-huge", features(n_fft=1_000_000), "n_fft must be at most 16384"),
    ("n-mels-huge", features(n_mels=100_000), "n_mels must be at most 512"),
    ("n-mfcc-above-n-mels", features(n_mels=20, n_mfcc=30), "n_mfcc exceeds n_mels"),
    ("fmax-above-nyquist", features(fmax=9000.0), "need fmin < fmax <= sample_rate / 2"),
    ("fmin-above-fmax", features(fmin=5000.0, fmax=4000.0), "need fmin < fmax <= sample_rate / 2"),
    ("sample-rate-huge", features(sample_rate=10_000_000), "sample_rate must be at most 192000"),
    ("clip-samples-huge", features(clip_samples=10_000_000), "clip_samples must be at most 1920000"),
    ("hop-zero", features(hop_length=0), "hop_length must be an integer >= 1"),
    ("frames-the-model-cannot-take", features(frames=2), "input (1, 2, 13) is too small for two 3x3 convs"),
    ("noise-count-huge", section("data_loader", "args", "background_noise", train=100_000_000),
     "background_noise.train must be at most 100000"),
    ("noise-count-negative", section("data_loader", "args", "background_noise", test=-1), "must be an integer >= 0"),
    ("batch-size-huge", section("data_loader", "args", batch_size=10 ** 9), "batch_size must be at most 65536"),
    ("eval-batch-size-zero", section("data_loader", "args", eval_batch_size=0), "eval_batch_size must be an integer >= 1"),
    ("eval-batch-size-string", section("data_loader", "args", eval_batch_size="x"), "eval_batch_size must be an integer"),
    ("keyword-with-a-path", section("data_loader", "args", keywords=["../one", "two", "three"]),
     "config data_loader.args.keywords: keyword '../one' must be one folder name of the corpus"),
    ("keyword-with-an-escape", section("data_loader", "args", keywords=["\x1b[31mone", "two", "three"]),
     "keyword '\\x1b[31mone' must be one folder name of the corpus: printable"),
    ("seed-2-to-64", lambda c: c.update(seed=2 ** 64), "config seed must be at most 4294967295"),
    ("seed-negative", lambda c: c.update(seed=-1), "config seed must be an integer >= 0"),
    ("time-shift-inf", section("data_loader", "args", "augment", time_shift_ms=float("inf")),
     "time_shift_ms must be a number"),
    ("time-shift-nan", section("data_loader", "args", "augment", time_shift_ms=float("nan")),
     "time_shift_ms must be a number"),
    ("adam-betas-2", section("optimizer", "args", betas=[2, 0.999]), "config optimizer.args do not fit Adam"),
    ("adam-eps-negative", section("optimizer", "args", eps=-1), "config optimizer.args do not fit Adam"),
    ("lr-negative", section("optimizer", "args", lr=-0.1), "config optimizer.args.lr must be a number in (0, inf]"),
    ("lr-nan", section("optimizer", "args", lr=float("nan")), "config optimizer.args.lr must be a number"),
    ("scheduler-gamma-overflows", lambda c: c.update(lr_scheduler={"type": "StepLR", "args": {"step_size": 1, "gamma": 1e300}}),
     "makes the learning rate 3.0000000000000003e+297 in epoch 2"),
    ("temperature-tiny", section("trainer", distillation={"teachers": 1, "temperature": 1e-300, "alpha": 1}),
     "config trainer.distillation.temperature must be a number in [0.01, inf], found 1e-300"),
    ("lr-beyond-float32", section("optimizer", "args", lr=1e300), "config optimizer.args.lr must be at most 1e+38"),
    ("optimizer-lbfgs", section("optimizer", type="LBFGS"), "LBFGS is a torch optimizer the trainer does not drive"),
    ("optimizer-sparse-adam", section("optimizer", type="SparseAdam"), "SparseAdam is a torch optimizer the trainer"),
    ("scheduler-plateau", lambda c: c.update(lr_scheduler={"type": "ReduceLROnPlateau", "args": {}}),
     "ReduceLROnPlateau is a learning-rate scheduler the trainer does not drive"),
    ("scheduler-one-cycle", lambda c: c.update(lr_scheduler={"type": "OneCycleLR", "args": {}}),
     "OneCycleLR is a learning-rate scheduler the trainer does not drive"),
    ("scheduler-base-class", lambda c: c.update(lr_scheduler={"type": "LRScheduler", "args": {}}),
     "LRScheduler is a learning-rate scheduler the trainer does not drive"),
    ("scheduler-args-wrong", lambda c: c.update(lr_scheduler={"type": "StepLR", "args": {"gamma": 0.5}}),
     "config lr_scheduler.args do not fit StepLR"),
]


@pytest.mark.parametrize("change, message", [c[1:] for c in BOUND_CASES], ids=[c[0] for c in BOUND_CASES])
def test_out_of_bounds_values_are_refused_by_the_schema(change, message):
    assert message in config_error(change)


def test_the_shipped_config_still_validates_with_the_bounds_at_their_edges():
    cfg = default_config()
    cfg["seed"] = 2 ** 32 - 1
    cfg["data_loader"]["args"]["background_noise"] = {"train": 100_000, "validation": 0, "test": 0, "seed": 0}
    cfg["data_loader"]["args"]["features"] = {"n_fft": 512, "win_length": 512, "fmax": 8000.0, "n_mfcc": 40,
                                              "n_mels": 40}
    assert validate_config(cfg)["seed"] == 2 ** 32 - 1


def test_validation_leaves_the_random_state_alone():
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    validate_config(default_config())
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("args, message", [
    ({"background_noise": {"train": 100_000_000}}, "background_noise.train must be at most 100000"),
    ({"eval_batch_size": 0}, "eval_batch_size must be an integer >= 1"),
    ({"eval_batch_size": "x"}, "eval_batch_size must be an integer"),
    ({"augment": "loud"}, "augment must be a mapping of keys"),
    ({"background_noise": {"train": 100_000, "validation": 100_000, "test": 100_000},
      "features": {"clip_samples": 1_920_000, "sample_rate": 192_000}}, "above the cap of 16 GiB"),
], ids=["stored-noise-huge", "stored-eval-batch-zero", "stored-eval-batch-string", "stored-augment-string",
        "stored-memory-estimate"])
def test_a_checkpoints_stored_loader_args_pass_the_same_schema(args, message):
    stored = {"data_dir": "data/x", **args}
    error = one_line_error(lambda: validate_stored_loader("SpeechCommandsDataLoader", stored, "the checkpoint"))
    assert error.startswith("the checkpoint stores a config the schema refuses (") and message in error


@pytest.mark.parametrize("flag, value, message", [
    ("smooth_ms", 1e12, "--smooth-ms must be >= 0 (0 = no smoothing) and at most 60000"),
    ("smooth_ms", float("nan"), "--smooth-ms must be a finite number, got nan"),
    ("refractory_ms", 1e12, "--refractory-ms must be >= 0 and at most 60000"),
    ("refractory_ms", -1.0, "--refractory-ms must be >= 0"),
], ids=["smooth-huge", "smooth-nan", "refractory-huge", "refractory-negative"])
def test_predict_span_flags_are_bounded(flag, value, message):
    assert message in one_line_error(lambda: DetectorSettings(**{flag: value}).validate(1000.0))


# ---- corpus files that are not regular files ----------------------------------------------------------

def _clip(path):
    sf.write(str(path), np.zeros(1600, dtype=np.float32), 16000, subtype="FLOAT")
    return path


def test_a_fifo_is_refused_without_being_opened(tmp_path):
    fifo = tmp_path / "clip.wav"
    os.mkfifo(fifo)
    with pytest.raises(AudioError, match="not a regular file"):
        read_wave(fifo, 16000)   # opening it for reading would block forever


def test_a_socket_and_a_device_are_refused(tmp_path):
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(tmp_path / "s.wav"))
        with pytest.raises(AudioError, match="not a regular file"):
            read_wave(tmp_path / "s.wav", 16000)
    finally:
        sock.close()
    with pytest.raises(AudioError, match="not a regular file"):
        read_wave("/dev/zero", 16000)


def test_a_symlink_loop_and_a_dangling_link_are_unreadable_clips(tmp_path):
    (tmp_path / "loop.wav").symlink_to(tmp_path / "loop.wav")
    (tmp_path / "dangling.wav").symlink_to(tmp_path / "gone.wav")
    with pytest.raises(AudioError, match="Too many levels of symbolic links"):
        read_wave(tmp_path / "loop.wav", 16000)
    with pytest.raises(AudioError, match="No such file or directory"):
        read_wave(tmp_path / "dangling.wav", 16000)
    (tmp_path / "good.wav").symlink_to(_clip(tmp_path / "real.wav"))
    assert read_wave(tmp_path / "good.wav", 16000).shape == (1600,)


def test_a_clip_whose_name_is_not_utf8_is_read_and_shown_escaped(tmp_path):
    name = os.fsdecode(b"caf\xe9.wav")
    _clip(tmp_path / "plain.wav").rename(tmp_path / name)
    assert read_wave(tmp_path / name, 16000).shape == (1600,)
    assert shown(tmp_path / name).endswith("caf\\xe9.wav")


def test_finite_but_huge_float_samples_are_refused(tmp_path):
    path = tmp_path / "loud.wav"
    sf.write(str(path), np.full(1600, 1e30, dtype=np.float32), 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"samples up to 1e\+30, far outside the \[-1, 1\] of audio"):
        read_wave(path, 16000)


# ---- checkpoints: CRCs, dense tensors, stored solutions ---------------------------------------------

def _flip_a_stored_byte(path, member_suffix):
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith(member_suffix))
    data = bytearray(path.read_bytes())
    # the member's data follow its local header (30 bytes, the name and the extra field)
    name_len = int.from_bytes(data[info.header_offset + 26:info.header_offset + 28], "little")
    extra_len = int.from_bytes(data[info.header_offset + 28:info.header_offset + 30], "little")
    data[info.header_offset + 30 + name_len + extra_len + 5] ^= 0x40
    path.write_bytes(bytes(data))


def test_one_flipped_bit_inside_a_checkpoint_is_caught_by_its_crc(tmp_path):
    path = tmp_path / "model.pth"
    torch.save({"w": torch.arange(64, dtype=torch.float32)}, path)
    _flip_a_stored_byte(path, "data/0")
    message = one_line_error(lambda: load_checkpoint(path))
    assert message.startswith(f"{path} is corrupted (member ") and "fails its CRC check" in message


def _minimal(**changes):
    ckpt = {"arch": "KeywordLeNet5Clone", "arch_args": {}, "state_dict": {"w": torch.zeros(2, 2)}, "config": {},
            "features": {}, "normalization": {"mean": torch.zeros(13), "std": torch.ones(13)}}
    ckpt.update(changes)
    return ckpt


@pytest.mark.parametrize("changes, message", [
    ({"state_dict": {"w": torch.eye(2).to_sparse()}}, "state_dict holds a sparse or otherwise non-dense tensor"),
    ({"state_dict": {"w": torch.full((2,), 3e38)}}, "state_dict holds weights above 1e+10 in magnitude"),
    ({"solutions": "layers: {}"}, "solutions must map quantization / pruning to YAML text, found str"),
    ({"solutions": ["x"]}, "solutions must map quantization / pruning to YAML text, found list"),
    ({"solutions": {"quantization": 7}}, "solutions must map quantization / pruning to YAML text, found dict"),
    ({"class_names": 0}, "class_names must be a list of at most 1000 printable words, found int"),
    ({"keywords": 5}, "keywords must be a list of at most 1000 printable words, found int"),
    ({"keywords": ["one"], "arch_args": {"num_classes": "4"}}, "arch_args.num_classes must be an integer from 2"),
], ids=["sparse-tensor", "weights-3e38", "solutions-string", "solutions-list", "solutions-int-value",
        "class-names-int", "keywords-int", "num-classes-string"])
def test_a_checkpoints_tensors_and_solutions_are_checked(changes, message):
    assert message in one_line_error(lambda: validate_checkpoint(_minimal(**changes), "p.pth"))


def test_the_minimal_checkpoint_is_valid():
    validate_checkpoint(_minimal(), "p.pth")


def test_a_corpus_of_fifos_links_and_odd_names_is_read_with_those_clips_skipped_and_counted(tmp_path, caplog):
    """A FIFO clip or noise file would block the reader forever; a link loop, a dangling link and a
    FIFO are skipped clips (the "skipped, counted" warning), a clip whose name is not UTF-8 is read,
    and no message is a logging error."""
    import logging
    import signal

    from data_loader.corpus import scan_corpus
    from data_loader.dataset import load_split
    from data_loader.features import FeatureParams

    root = tmp_path / "c"
    rng = np.random.default_rng(0)
    for word in ("one", "two", "cat"):
        (root / word).mkdir(parents=True)
        for i in range(3):
            sf.write(str(root / word / f"s{i}_nohash_0.wav"),
                     (0.1 * rng.standard_normal(8000)).astype(np.float32), 16000, subtype="PCM_16")
    (root / "validation_list.txt").write_text("one/s0_nohash_0.wav\n")
    (root / "testing_list.txt").write_text("two/s1_nohash_0.wav\n")
    os.mkfifo(root / "cat" / "fifo_nohash_0.wav")
    (root / "cat" / "loop_nohash_0.wav").symlink_to(root / "cat" / "loop_nohash_0.wav")
    (root / "cat" / "dangling_nohash_0.wav").symlink_to(root / "cat" / "gone.wav")
    odd = os.fsdecode(b"caf\xe9_nohash_0.wav")
    (root / "cat" / "s2_nohash_0.wav").rename(root / "cat" / odd)
    (root / "_background_noise_").mkdir()
    os.mkfifo(root / "_background_noise_" / "pipe.wav")

    def hung(signum, frame):
        raise AssertionError("reading the corpus blocked")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(120)
    try:
        with caplog.at_level(logging.WARNING):
            corpus = scan_corpus(root)
            data, _ = load_split(corpus, "train", FeatureParams(), noise_clips=2, cache_dir=tmp_path / "cache",
                                 progress=False)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert sorted(data.skipped) == ["cat/dangling_nohash_0.wav", "cat/fifo_nohash_0.wav", "cat/loop_nohash_0.wav"]
    assert f"cat/{odd}" in data.names and len(data) == 7     # 3 + 2 + 2 train clips; the noise FIFO gives none
    messages = [r.getMessage() for r in caplog.records]
    assert sum("not a regular file" in m for m in messages) == 2 and all(m.isprintable() for m in messages)


def test_weights_within_the_bound_that_overflow_together_are_refused_when_the_model_is_built():
    """Every weight 9e9 (under the reader's 1e10) makes float32 outputs infinite: predict.py printed
    p=nan and test.py loss nan with exit 0; build_model now refuses the checkpoint in one line,
    and a model of ordinary weights passes."""
    from model.registry import build_model, make_model
    from utils.checkpoint import Checkpoint
    model = make_model("KeywordLeNet5Clone", {"num_classes": 4}, {})
    weights = {k: torch.full_like(v, 9e9) for k, v in model.state_dict().items()}
    ckpt = Checkpoint(**{**_minimal(arch_args={"num_classes": 4}), "state_dict": weights})
    assert one_line_error(lambda: build_model(ckpt, "p.pth")) == (
        "p.pth computes outputs that are not finite (NaN or infinite) on a plain input: its weights overflow "
        "float32 together (the largest is 9e+09); give a checkpoint saved by train.py")
    build_model(Checkpoint(**{**_minimal(arch_args={"num_classes": 4}), "state_dict": model.state_dict()}), "p.pth")
