"""export.py --target cortex-m4: the firmware folder builds with arm-none-eabi-gcc, runs under
qemu-system-arm, reproduces the Python integer engine's score on every test clip and, on the
integer front end, predict.py's detections on a recording pushed through the stream; it reports
flash, RAM and instructions; bad targets and a float model are one-line errors."""
import re
import shutil
import subprocess
from dataclasses import replace

import numpy as np
import pytest
import yaml

from app.detection import DetectorSettings, KeywordClassifier, scan_frames, stored_settings
from app.stream_test import split_stream
from conftest import run_c_model, run_script
from data_loader.integer_frontend import PCM_SCALE
from data_loader.stream import render_blocks
from deploy.firmware import parse_run
from tiny import quantized_tiny_run, run_folders
from utils.checkpoint import load_checkpoint, save_checkpoint

SUMMARY = re.compile(r"^(cortex-m[47]): scores identical on (\d+) clips; flash (\d+) B, RAM (\d+) B; "
                     r"(\d+) instructions per inference \((\d+\.\d\d) per MAC\); (\d+\.\d\d)% of an 80 MHz core$")
TOOLS = ("arm-none-eabi-gcc", "qemu-system-arm")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 2-epoch run on the tiny corpus and its quantization.yml (every group at 8 bits)."""
    tmp = tmp_path_factory.mktemp("firmware")
    _, _, run_dir = quantized_tiny_run(tmp)
    return tmp, run_dir / "model_best.pth", run_dir / "quantization.yml"


def _last_line(stdout):
    """The program's last line: GNU make adds its own "Leaving directory" line after it with -C."""
    return [line for line in stdout.strip().splitlines() if not re.match(r"make(\[\d+\])?: (Entering|Leaving) directory", line)][-1]


def _ints(path):
    return np.array([[int(v) for v in line.split()] for line in path.read_text().splitlines()])


@pytest.mark.parametrize("target", ["cortex-m4", "cortex-m7"])
def test_firmware_reproduces_every_score_under_qemu(run, target, tmp_path):
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (apt-get install gcc-arm-none-eabi "
                    f"libnewlib-arm-none-eabi qemu-system-arm)")
    _, ckpt, q = run
    out = tmp_path / "fw"
    text = run_script("export.py", "-r", ckpt, "-q", q, "-o", out, "--target", target).stdout
    assert f"make -C {out} run" in text
    summary = yaml.safe_load((out / "export.yml").read_text())
    assert summary["target"] == target
    assert {"startup.c", "link.ld", "Makefile", "test_features.bin", "test_scores.bin"} <= set(summary["files"])
    clips = len(_ints(out / "expected_scores.txt"))
    assert clips == summary["clips"] == 10
    # the host build of the same model.c still gives the same scores (portable kernels)
    assert np.array_equal(run_c_model(out, (out / "test_vectors.txt").read_text(), tmp_path),
                          _ints(out / "expected_scores.txt"))
    proc = subprocess.run(["make", "-C", str(out), "run"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    last = _last_line(proc.stdout)
    m = SUMMARY.match(last)
    assert m, last
    assert last.isascii()
    assert m.group(1) == target and int(m.group(2)) == clips
    flash, ram, instructions = (int(m.group(i)) for i in (3, 4, 5))
    assert flash > 0 and ram > 0 and instructions > 0
    # the figures are consistent: per MAC divides by the profiler's MAC count, the share assumes
    # one inference every 100 ms on an 80 MHz core
    assert float(m.group(6)) == pytest.approx(instructions / summary["macs"], abs=0.006)
    assert float(m.group(7)) == pytest.approx(instructions * 10 / 80e6 * 100, abs=0.006)
    # weights alone take this much flash: the measured figure includes them
    assert flash >= summary["flash_bytes"]


LAYER = re.compile(r"^layer (\w+): (\d+) instructions per inference, (\d+) MACs executed \((\d+\.\d\d) per MAC\)$", re.M)


def test_4_bit_conv_and_2_bit_fc_weights_take_the_narrow_kernels_on_the_m4(run, tmp_path):
    """The compressed chain's formats (4-bit conv weights, 2-bit fc weights, narrow accumulators)
    on the tiny model: conv1, conv2 and fc3 go through the narrow packed kernels with their
    weights kept packed (fc4, 256 MACs, the portable loops), every score is the integer engine's on
    the M4 under QEMU and on the host, and the layers' instructions per MAC are counts the
    portable loops are far from (under -icount instruction counts are deterministic; with packed
    4-bit weights the portable loops take 6.6 and 12.0 per MAC in conv1 and conv2,
    docs/firmware.md); conv1 with its scaled weight pairs expanded into a stack array."""
    if any(shutil.which(tool) is None for tool in TOOLS):
        pytest.skip("arm-none-eabi-gcc or qemu-system-arm not installed")
    _, ckpt, q = run
    layers = yaml.safe_load(q.read_text())["layers"]
    for name, bits_w, bits_acc in (("conv1", 4, 16), ("conv2", 4, 20), ("fc3", 2, 18), ("fc4", 2, 16)):
        layers[name].update(bits_weights=bits_w, bits_accumulator=bits_acc)
    narrow_q = tmp_path / "narrow.yml"
    narrow_q.write_text(yaml.safe_dump({"layers": layers}))
    out = tmp_path / "fw"
    run_script("export.py", "-r", ckpt, "-q", narrow_q, "-o", out, "--target", "cortex-m4")
    source = (out / "model.c").read_text()
    assert re.findall(r"^/\* (\w+): .*\(narrow packed kernel, (\d)-bit fields", source, re.M) == [
        ("conv1", "4"), ("conv2", "4"), ("fc3", "2")]
    assert "4-bit weight codes 8x1x3x3" in source and "2-bit weight codes 64x184" in source
    assert re.search(r"static const uint32_t fc3_w\[(\d+)\]", source).group(1) == str(64 * 12)   # 16 to a word
    # conv1's scaled weight pairs (4 pairs of channels, 2 full fields and a half one each) expanded
    # once per call; conv2's (72-input rows) would not fit in 64 words
    assert re.findall(r"uint32_t we\[(\d+)\];", source) == ["40"]
    assert source.count("KWS_EF22(") == 2 + 1 and source.count("KWS_EH22(") == 1 + 1   # + the macros
    assert np.array_equal(run_c_model(out, (out / "test_vectors.txt").read_text(), tmp_path),
                          _ints(out / "expected_scores.txt"))
    proc = subprocess.run(["make", "-s", "-C", str(out), "run"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    m = SUMMARY.match(_last_line(proc.stdout))
    assert m and m.group(1) == "cortex-m4" and int(m.group(2)) == 10, proc.stdout[-2000:]
    per_mac = {name: float(x) for name, _, _, x in LAYER.findall(proc.stdout)}
    assert per_mac["conv1"] < 3.5 and per_mac["conv2"] < 3.0 and per_mac["fc3"] < 3.0, per_mac
    assert per_mac["fc4"] > 5.0, per_mac   # the portable loops
    assert float(m.group(6)) < 2.5


SC12_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "bed", "cat")
SC12_NAMES = ["unknown", "yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "silence"]


@pytest.fixture(scope="module", params=["config_lenet5_sc12.yml", "config_dscnn_sc12.yml"])
def run12(request, tmp_path_factory):
    """The 12-class task (unknown, ten command words, silence) with LeNet5 and with DS-CNN (whose
    padded, depthwise and average-pooled convs take the other packed kernels) on a tiny corpus of
    those words and two unknown ones, 2 epochs, quantized at 8 bits."""
    tmp = tmp_path_factory.mktemp("firmware_sc12")
    _, _, run_dir = quantized_tiny_run(tmp, SC12_WORDS, request.param)
    return run_dir / "model_best.pth", run_dir / "quantization.yml"


def test_twelve_class_firmware_reproduces_every_score(run12, tmp_path):
    """Every clip of every class (silence included) gives the integer engine's 12 scores on the
    M4; model.h names the 12 classes; export.yml holds the measured figures, layer by layer."""
    if any(shutil.which(tool) is None for tool in TOOLS):
        pytest.skip("arm-none-eabi-gcc or qemu-system-arm not installed")
    ckpt, q = run12
    out = tmp_path / "fw"
    text = run_script("export.py", "-r", ckpt, "-q", q, "-o", out, "--target", "cortex-m4").stdout
    header = (out / "model.h").read_text()

    def names(macro):
        found = re.search(rf"^#define {macro} \{{(.*)\}}$", header, re.M).group(1)
        return [n.strip().strip('"') for n in found.split(",")]
    assert names("KWS_CLASS_NAMES") == SC12_NAMES
    assert "#define KWS_N_CLASSES 12" in (out / "model.h").read_text()
    labels = _ints(out / "test_labels.txt")[:, 0]
    assert set(labels) == set(range(12))   # every class among the replayed clips, silence (11) too
    expected = np.fromfile(out / "test_scores.bin", dtype="<i4").reshape(-1, 12)
    assert np.array_equal(expected, _ints(out / "expected_scores.txt"))
    summary = yaml.safe_load((out / "export.yml").read_text())
    fw = summary["firmware"]
    assert fw["scores_identical"] is True and fw["clips"] == len(labels) == summary["clips"]
    assert f"Firmware on cortex-m4 (QEMU): scores identical on {len(labels)} clips" in text
    # the per-layer counts: every layer, the MACs the C code executes, and together about the
    # whole inference (each layer's count includes one hook call)
    layers = names("KWS_LAYER_NAMES")
    assert [la["name"] for la in fw["layers"]] == layers and len(layers) in (4, 10)   # LeNet5; DS-CNN: conv1, 4 x (dw, pw), fc
    assert sum(la["macs_executed"] for la in fw["layers"]) == int(
        re.search(r"KWS_MACS_COMPUTED (\d+)u", (out / "test_data.h").read_text()).group(1))
    total = sum(la["instructions"] for la in fw["layers"])
    assert abs(total - fw["instructions"]) <= 0.01 * fw["instructions"], (total, fw["instructions"])
    # and the same figures as the program prints when the user runs it
    proc = subprocess.run(["make", "-s", "-C", str(out), "run"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert parse_run(proc.stdout) == fw


def test_a_changed_expected_score_is_reported(run, tmp_path):
    """The firmware really compares: one wrong expected score makes make run fail and say so."""
    if any(shutil.which(tool) is None for tool in TOOLS):
        pytest.skip("arm-none-eabi-gcc or qemu-system-arm not installed")
    _, ckpt, q = run
    out = tmp_path / "fw"
    run_script("export.py", "-r", ckpt, "-q", q, "-o", out, "--target", "cortex-m4")
    scores = np.fromfile(out / "test_scores.bin", dtype="<i4")
    scores[5] += 1
    scores.tofile(out / "test_scores.bin")
    proc = subprocess.run(["make", "-C", str(out), "run"], capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    assert _last_line(proc.stdout).startswith("cortex-m4: scores differ on 1 of 10 clips;")


def test_unknown_target_is_an_argparse_error(run, tmp_path):
    _, ckpt, q = run
    proc = run_script("export.py", "-r", ckpt, "-q", q, "-o", tmp_path / "fw", "--target", "cortex-m0",
                      check=False)
    assert proc.returncode == 1   # argparse's errors are one line and exit 1, as all bad input (utils.cli)
    assert proc.stderr.startswith("error: argument --target: invalid choice: 'cortex-m0'")
    assert proc.stderr.count("\n") == 1
    assert not (tmp_path / "fw").exists()


def test_target_without_quantization_is_a_one_line_error(run, tmp_path):
    _, ckpt, _ = run
    proc = run_script("export.py", "-r", ckpt, "-o", tmp_path / "fw", "--target", "cortex-m4", check=False)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --target cortex-m4 needs an integer model"), proc.stderr
    assert not (tmp_path / "fw").exists()


STREAM_SUMMARY = re.compile(r"^cortex-m4: scores identical on (\d+) clips, detections identical \((\d+)\); "
                            r"flash (\d+) B, RAM (\d+) B; (\d+) instructions per inference \((\d+\.\d\d) per MAC\); "
                            r"(\d+\.\d\d)% of an 80 MHz core$")


@pytest.fixture(scope="module")
def integer_firmware(tmp_path_factory):
    """A 2-epoch run on the integer front end, quantized at 8 bits, whose checkpoint's operating
    point is lowered to a threshold that one in ten windows of the test split's stream reaches (a
    2-epoch model is unsure: its calibrated threshold finds nothing), exported for the Cortex-M4:
    (classifier of the lowered checkpoint, settings, firmware folder, export.py's output)."""
    tmp = tmp_path_factory.mktemp("firmware_stream")
    corpus, _, run_dir = quantized_tiny_run(tmp, base="config_lenet5_keywords_integer.yml")
    q = run_dir / "quantization.yml"
    classifier = KeywordClassifier.from_checkpoint(run_dir / "model_best.pth", q)
    plan = split_stream(classifier, classifier.ckpt, corpus, "test", 0.01, 0)
    first = scan_frames(classifier, render_blocks(plan), DetectorSettings())
    threshold = float(np.quantile(first.posteriors[:, 1:].max(axis=1), 0.9))
    ckpt = load_checkpoint(run_dir / "model_best.pth")
    lowered = tmp / "lowered.pth"
    save_checkpoint(lowered, replace(ckpt, detector={**ckpt.detector, "threshold": threshold}))
    out = tmp / "fw"
    text = run_script("export.py", "-r", lowered, "-q", q, "-o", out, "--target", "cortex-m4").stdout
    classifier = KeywordClassifier.from_checkpoint(lowered, q)
    settings, _ = stored_settings(classifier.ckpt)
    assert settings.threshold == threshold
    return classifier, settings, out, text


def test_the_firmware_stream_makes_predict_py_s_detections_under_qemu(integer_firmware):
    """The whole firmware on the integer front end: the test clips' scores, and the recording
    (test_stream.bin) pushed through kws_push on the M4 gives, detection for detection, what
    predict.py's scan finds in the same PCM; the summary counts them, make run passes, export.yml
    holds the figures of the whole pipeline."""
    if any(shutil.which(tool) is None for tool in TOOLS):
        pytest.skip("arm-none-eabi-gcc or qemu-system-arm not installed")
    classifier, settings, out, text = integer_firmware
    pcm = np.fromfile(out / "test_stream.bin", dtype="<i2")
    rate = classifier.sample_rate
    assert len(pcm) >= 30 * rate and np.abs(pcm).max() > 1000   # a real recording of half a minute or more
    python = scan_frames(classifier, [pcm.astype(np.float32) / PCM_SCALE], settings)
    assert len(python.detections) >= 3
    hop = settings.hop_samples(rate)
    expected = np.fromfile(out / "test_detections.bin", dtype="<i4").reshape(-1, 3)
    assert [(w * hop / rate, classifier.class_names[k], s / 65536) for w, k, s in expected.tolist()] == \
        [(d.start_s, d.name, d.score) for d in python.detections]

    proc = subprocess.run(["make", "-s", "-C", str(out), "run"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    last = _last_line(proc.stdout)
    m = STREAM_SUMMARY.match(last)
    assert m, last
    assert int(m.group(2)) == len(python.detections)   # the count the device printed is Python's
    fw = parse_run(proc.stdout)
    summary = yaml.safe_load((out / "export.yml").read_text())
    assert summary["firmware"] == fw
    assert f"detections identical ({len(python.detections)})" in text
    assert fw["detections_identical"] is True and fw["detections"] == len(python.detections)
    stream = fw["stream"]
    assert stream["samples"] == len(pcm) and stream["windows"] == len(python.starts_s)
    assert stream["hops"] == -(-len(pcm) // classifier.params.hop_length)
    # a hop that runs the model costs more than the model alone; the mean is the real-time share
    assert stream["instructions_per_hop_max"] > fw["instructions"]
    assert stream["instructions_per_hop_max"] > stream["instructions_per_hop_mean"] > 0
    # every hop computes one frame's log energies; a window hop also its frames' DCTs and the model
    frames = int(re.search(r"#define KWS_FE_FRAMES \((\d+)\)", (out / "frontend_config.h").read_text()).group(1))
    assert stream["instructions_per_hop_mean"] > stream["frontend_frame_instructions"] > 0
    assert stream["instructions_per_hop_max"] > (fw["instructions"] + stream["frontend_frame_instructions"]
                                                 + frames * stream["window_frame_instructions"])
    hops_per_second = rate // classifier.params.hop_length
    assert fw["core_percent"] == pytest.approx(stream["instructions_per_hop_mean"] * hops_per_second / 80e6 * 100,
                                               abs=0.006)
    # flash and RAM: the three parts of the keyword spotter and the pipeline's peak stack
    parts = fw["parts"]
    assert set(parts) == {"model", "frontend", "stream"} and all(p["code_bytes"] > 0 for p in parts.values())
    assert fw["flash_bytes"] == sum(p["code_bytes"] + p["data_bytes"] for p in parts.values())
    stack = fw["stack_bytes"]
    assert stack["pipeline"] >= stack["model"] > 0
    assert fw["ram_bytes"] == sum(p["data_bytes"] + p["bss_bytes"] for p in parts.values()) + stack["pipeline"]


def test_a_changed_expected_detection_is_reported(integer_firmware, tmp_path):
    """The firmware really compares detections: one expected score off by one makes make run
    fail and the summary say which."""
    if any(shutil.which(tool) is None for tool in TOOLS):
        pytest.skip("arm-none-eabi-gcc or qemu-system-arm not installed")
    _, _, out, _ = integer_firmware
    changed = tmp_path / "fw"
    shutil.copytree(out, changed)
    detections = np.fromfile(changed / "test_detections.bin", dtype="<i4")
    n = len(detections) // 3
    detections[3 * 1 + 2] += 1
    detections.tofile(changed / "test_detections.bin")
    proc = subprocess.run(["make", "-s", "-C", str(changed), "run"], capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    assert f", detections differ ({n - 1} of {n} identical, {n} found); " in _last_line(proc.stdout)
    assert re.search(r"^stream: .*detection 1: window \d+ label \d+ score (-?\d+), expected window \d+ label \d+ "
                     r"score (-?\d+)$", proc.stdout, re.M)


def test_without_the_top_db_clamp_the_stream_keeps_codes_and_needs_less_ram(integer_firmware, tmp_path):
    """The same checkpoint with the features' top_db clamp turned off (``features: {top_db: null}``)
    on the M4: predict.py's detections on the recording, and stream.c keeps each frame's input
    codes in the model's input instead of a ring of 24-bit log energies (40 mel bands a frame):
    its bss shrinks by more than the ring's 97 frames x 40 x 3 bytes."""
    if any(shutil.which(tool) is None for tool in TOOLS):
        pytest.skip("arm-none-eabi-gcc or qemu-system-arm not installed")
    classifier, _, out, _ = integer_firmware
    clamped = yaml.safe_load((out / "export.yml").read_text())["firmware"]
    ckpt = load_checkpoint(out.parent / "lowered.pth")
    unclamped = tmp_path / "unclamped.pth"
    save_checkpoint(unclamped, replace(ckpt, features={**ckpt.features, "top_db": None}))
    q = run_folders(out.parent)[-1] / "quantization.yml"
    fw_dir = tmp_path / "fw"
    text = run_script("export.py", "-r", unclamped, "-q", q, "-o", fw_dir, "--target", "cortex-m4").stdout
    classifier = KeywordClassifier.from_checkpoint(unclamped, q)
    settings, _ = stored_settings(classifier.ckpt)
    pcm = np.fromfile(fw_dir / "test_stream.bin", dtype="<i2")
    python = scan_frames(classifier, [pcm.astype(np.float32) / PCM_SCALE], settings)
    assert len(python.detections) >= 1
    fw = yaml.safe_load((fw_dir / "export.yml").read_text())["firmware"]
    assert fw["scores_identical"] is True and fw["detections_identical"] is True
    assert fw["detections"] == len(python.detections), text
    assert "#define KWS_FE_TOP_DB (-1)" in (fw_dir / "frontend_config.h").read_text()
    saved = clamped["parts"]["stream"]["bss_bytes"] - fw["parts"]["stream"]["bss_bytes"]
    assert saved > 97 * 40 * 3, (clamped["parts"], fw["parts"])
    assert fw["ram_bytes"] < clamped["ram_bytes"] - 97 * 40 * 3
