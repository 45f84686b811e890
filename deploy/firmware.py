"""Microcontroller build of the exported C model: a firmware folder for a Cortex-M board that
QEMU emulates, which replays the test split's clips and checks every score.

``export_firmware`` writes, beside model.h / model.c (``deploy.c_export``):

* ``startup.c`` (vector table, reset handler, stack painting), ``link.ld`` (the MPS2 board's
  memory map; the model's sections kept apart so their sizes can be reported), ``firmware.h``,
  ``firmware.c`` (the test harness) and a ``Makefile`` (``make run`` builds with arm-none-eabi-gcc
  and runs the program under qemu-system-arm);
* ``test_data.h``, ``test_data.S``, ``test_features.bin`` (the test clips' input feature codes,
  int8 or int16 little endian as ``kws_input_t``) and ``test_scores.bin`` (the Python integer
  engine's int32 scores for them);
* on the integer front end, ``test_stream.bin`` (a recording as int16 PCM) and
  ``test_detections.bin`` (predict.py's detections on it as int32 window, label, Q16 score
  triples), which the firmware replays through the stream (stream.c's ``kws_push`` in 10 ms
  hops, with frontend.c and model.c: deploy/c_stream.py); both are empty without the stream.

The clips start from feature codes, as the clip API of model.h does. The last line is the summary
``<target>: scores identical on <N> clips, detections identical (<D>); flash <F> B, RAM <R> B;
<I> instructions per inference (<X> per MAC); <L>% of an 80 MHz core``: flash and RAM of the
keyword spotter (front end, model and stream with its detector: code, constants, data, bss and
the pipeline's peak stack, measured by painting), instructions per inference of the model alone,
and the share of the core that the whole pipeline takes in real time (the mean instructions per
10 ms hop of the stream). Without the stream (a float front end) the detections are left out and
flash, RAM and the share are the model's. Instructions are counted with SysTick under ``qemu
-icount shift=0`` (one instruction per nanosecond, 40 per tick of the 25 MHz SysTick).
Before it, one line per layer (``layer NAME: I instructions per inference, M MACs executed (X per
MAC)``), from a second build of model.c that reads SysTick around each layer (KWS_LAYER_HOOK).
``run_firmware`` runs ``make run`` and ``parse_run`` reads these figures (export.py stores them
in export.yml).
"""
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np

from deploy.integer_engine import IntegerModel
from utils.atomic import write_bytes, write_text
from utils.errors import UserError

_TEMPLATES = Path(__file__).parent / "templates" / "firmware"
HOST = "host"


@dataclass(frozen=True)
class Target:
    machine: str      # QEMU's MPS2 board with this core
    cpu_flags: str    # arm-none-eabi-gcc code generation flags


TARGETS = {
    "cortex-m4": Target("mps2-an386", "-mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16"),
    "cortex-m7": Target("mps2-an500", "-mcpu=cortex-m7 -mthumb -mfloat-abi=hard -mfpu=fpv5-d16"),
}
TOOLS = ("make", "arm-none-eabi-gcc", "qemu-system-arm")
STREAM_SECONDS = 60.0   # the longest recording the firmware replays (int16 PCM in the board's 4 MB of flash)
_SUMMARY = re.compile(r"^(\S+): scores (identical|differ on \d+ of) (?:on )?(\d+) clips"
                      r"(?:, detections (identical \((\d+)\)|differ \((\d+) of (\d+) identical, (\d+) found\)))?; "
                      r"flash (\d+) B, RAM (\d+) B; (\d+) instructions per inference \((\d+\.\d\d) per MAC\); "
                      r"(\d+\.\d\d)% of an 80 MHz core", re.M)
_LAYER = re.compile(r"^layer (\S+): (\d+) instructions per inference, (\d+) MACs executed \((\d+\.\d\d) per MAC\)$", re.M)
_PART = re.compile(r"^flash and RAM of (model|front end|stream): code and constants (\d+) B, data (\d+) B, "
                   r"bss (\d+) B$", re.M)
_STACK = re.compile(r"^peak stack: model (\d+) B \(one inference\)(?:, pipeline (\d+) B)?", re.M)
_STREAM = re.compile(r"^stream: (\d+) samples, (\d+) hops, (\d+) windows; instructions per hop: mean (\d+), "
                     r"max (\d+); kws_finish (\d+)$", re.M)
_FRONTEND = re.compile(r"^front end: (\d+) instructions per frame \(kws_frontend_frame\), (\d+) per frame of a window", re.M)
PART_KEYS = {"model": "model", "front end": "frontend", "stream": "stream"}
STREAM_FILES = ("test_stream.bin", "test_detections.bin")
TEMPLATE_FILES = ("startup.c", "firmware.c", "firmware.h", "link.ld", "Makefile", "test_data.S")
FIRMWARE_FILES = TEMPLATE_FILES + ("test_data.h", "test_features.bin", "test_scores.bin") + STREAM_FILES


@dataclass(frozen=True)
class StreamTest:
    """The recording the firmware replays through the stream and what predict.py finds in it."""
    pcm: np.ndarray          # int16 samples
    detections: list         # (window, label, Q16 score) of each detection, in time order
    windows: int             # windows predict.py scans (kws_finish's return value)
    hop_length: int          # samples per front-end hop (one kws_push)
    sample_rate: int


def check_target(target: Optional[str]) -> Optional[Target]:
    """``target`` (a --target value): None for the host, else its Target; unknown names raise."""
    if target in (None, HOST):
        return None
    if target not in TARGETS:
        raise UserError(f"unknown target {target!r}; choose one of {HOST}, {', '.join(TARGETS)}")
    return TARGETS[target]


def computed_macs(int_model: IntegerModel) -> int:
    """Multiply-accumulates the C code executes per inference: every conv output its pooling reads
    (fewer than the profiler's count, which includes the rows and columns a floor-mode max pool
    drops), every weight of a fully connected layer."""
    return sum(layer_macs(int_model))


def layer_macs(int_model: IntegerModel) -> list:
    """The multiply-accumulates of computed_macs, layer by layer."""
    counts = []
    for layer in int_model.layers:
        if layer.kind == "linear":
            counts.append(int(layer.weight.size))
            continue
        c_out, ch, cw = layer.conv_shape
        if not layer.avgpool and layer.maxpool:
            _, oh, ow = layer.output_shape
            ch, cw = oh * layer.maxpool, ow * layer.maxpool
        counts.append(c_out * ch * cw * int(np.prod(layer.weight.shape[1:])))
    return counts


def _test_data_header(target, clips, macs, per_layer, stream) -> str:
    computed = sum(per_layer)
    if stream is None:
        stream_defines = "#define KWS_STREAM 0   /* no stream: the model starts from feature codes only */"
    else:
        stream_defines = f"""#define KWS_STREAM 1
#define KWS_STREAM_SAMPLES {len(stream.pcm)}u        /* int16 PCM samples of the recording */
#define KWS_STREAM_HOP {stream.hop_length}u              /* samples per kws_push (one front-end hop) */
#define KWS_STREAM_HOPS_PER_SECOND {stream.sample_rate // stream.hop_length}u
#define KWS_STREAM_WINDOWS {stream.windows}              /* windows predict.py scans */
#define KWS_STREAM_DETECTIONS {len(stream.detections)}u   /* predict.py's detections on it */"""
    return f"""/* Generated by deploy/firmware.py. Do not edit. The test split's clips (test_data.S). */
#ifndef KWS_TEST_DATA_H
#define KWS_TEST_DATA_H

#include <stdint.h>

#include "model.h"

#define KWS_TARGET "{target}"
#define KWS_TEST_CLIPS {clips}u
#define KWS_MACS {macs}u            /* multiply-accumulates per classification, as profile.py counts them */
#define KWS_MACS_COMPUTED {computed}u   /* those the C code executes (outputs a max pool drops are skipped) */
#define KWS_LAYER_MACS {{{", ".join(f"{m}u" for m in per_layer)}}}   /* the same, layer by layer */
{stream_defines}

extern const kws_input_t kws_test_features[];   /* KWS_TEST_CLIPS x KWS_N_INPUTS codes */
extern const int32_t kws_test_scores[];         /* KWS_TEST_CLIPS x KWS_N_CLASSES, the integer engine's */
extern const int16_t kws_test_stream[];         /* KWS_STREAM_SAMPLES samples */
extern const int32_t kws_test_detections[];     /* KWS_STREAM_DETECTIONS x (window, label, score Q16) */

#endif
"""


def export_firmware(int_model: IntegerModel, codes: np.ndarray, scores: np.ndarray, outdir: Union[str, Path],
                    target: str, macs: int, stream: Optional[StreamTest] = None) -> list:
    """Write the firmware files for ``target`` (a key of TARGETS) into ``outdir``, which already
    holds model.h and model.c (and with ``stream``, the stream's and front end's C files:
    deploy.c_stream.export_stream); ``codes`` are the clips' input codes (N x C x H x W),
    ``scores`` the integer engine's (N x classes), ``macs`` the model's multiply-accumulates per
    classification as the profiler counts them (the per-MAC figure divides by it). Returns the
    names written."""
    spec = check_target(target)
    codes, scores = np.asarray(codes), np.asarray(scores)
    if len(codes) == 0:
        raise UserError("the test split has no clips: the firmware needs at least one to replay")
    outdir = Path(outdir)
    input_type = np.dtype("<i1") if int_model.input_bits <= 8 else np.dtype("<i2")
    # make run fails unless the summary says every score (and every detection) is identical
    passed = f"^{target}: scores identical on [0-9]+ clips" + (r", detections identical \(" if stream else ";")
    for name in TEMPLATE_FILES:
        text = (_TEMPLATES / name).read_text(encoding="utf-8")
        text = (text.replace("@TARGET@", target).replace("@MACHINE@", spec.machine)
                .replace("@CPU_FLAGS@", spec.cpu_flags).replace("@PIPELINE_OBJS@", "frontend.o stream.o" if stream else "")
                .replace("@PASSED@", passed))
        write_text(outdir / name, text)
    write_text(outdir / "test_data.h", _test_data_header(target, len(codes), macs, layer_macs(int_model), stream))
    write_bytes(outdir / "test_features.bin", codes.reshape(len(codes), -1).astype(input_type).tobytes())
    write_bytes(outdir / "test_scores.bin", scores.astype("<i4").tobytes())
    pcm = np.zeros(0, "<i2") if stream is None else np.asarray(stream.pcm)
    detections = np.zeros((0, 3)) if stream is None else np.asarray(stream.detections, dtype=np.int64).reshape(-1, 3)
    write_bytes(outdir / "test_stream.bin", pcm.astype("<i2").tobytes())
    write_bytes(outdir / "test_detections.bin", detections.astype("<i4").tobytes())
    return list(FIRMWARE_FILES)


def parse_run(text: str) -> Optional[dict]:
    """The figures the firmware prints (``make run``'s output): None without its summary line.
    ``detections`` is the number predict.py finds (None without the stream); flash and RAM are
    split into ``parts`` (model, frontend, stream: code and constants, data, bss in bytes); the
    stream's figures include the front end's parts timed alone (one frame's log energies, one
    frame of a window's clamp, DCT and fold)."""
    m = _SUMMARY.search(text)
    if m is None:
        return None
    stream = _STREAM.search(text)
    stack = _STACK.search(text)
    frontend = _FRONTEND.search(text)
    detections = None if m.group(4) is None else int(m.group(5) if m.group(5) is not None else m.group(7))
    return {"scores_identical": m.group(2) == "identical", "clips": int(m.group(3)),
            "detections_identical": None if m.group(4) is None else m.group(5) is not None,
            "detections": detections,
            "flash_bytes": int(m.group(9)), "ram_bytes": int(m.group(10)), "instructions": int(m.group(11)),
            "instructions_per_mac": float(m.group(12)), "core_percent": float(m.group(13)),
            "parts": {PART_KEYS[name]: {"code_bytes": int(c), "data_bytes": int(d), "bss_bytes": int(b)}
                      for name, c, d, b in _PART.findall(text)},
            "stack_bytes": None if stack is None else {"model": int(stack.group(1)),
                                                       "pipeline": None if stack.group(2) is None else int(stack.group(2))},
            "stream": None if stream is None else dict(zip(
                ("samples", "hops", "windows", "instructions_per_hop_mean", "instructions_per_hop_max",
                 "finish_instructions", "frontend_frame_instructions", "window_frame_instructions"),
                map(int, stream.groups() + (frontend.groups() if frontend else (0, 0))))),
            "layers": [{"name": name, "instructions": int(i), "macs_executed": int(n), "instructions_per_mac": float(x)}
                       for name, i, n, x in _LAYER.findall(text)]}


def run_firmware(outdir: Union[str, Path], timeout: int = 1800) -> Optional[dict]:
    """Build and run the firmware in ``outdir`` (``make run``: QEMU counts the instructions) when
    make, arm-none-eabi-gcc and qemu-system-arm are installed; its figures (parse_run), or None
    without the tools. A build that prints no summary raises UserError with make's last line."""
    if any(shutil.which(tool) is None for tool in TOOLS):
        return None
    proc = subprocess.run(["make", "-s", "-C", str(outdir), "run"], capture_output=True, text=True, timeout=timeout)
    figures = parse_run(proc.stdout)
    if figures is None:
        last = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
        raise UserError(f"the firmware in {outdir} did not run (make -C {outdir} run: {last})")
    return figures
