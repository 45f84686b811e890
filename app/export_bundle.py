"""What export.py does: turn a checkpoint and its solutions into a deployment bundle, and check
every artefact against the model it came from on the checkpoint's test split.

Bundle (each file written atomically into one folder):

* ``model_compact.pth``: the pruned model with its pruned kernels removed, an ordinary checkpoint
  (arch_args carry the smaller ``widths``) that test.py, profile.py, predict.py and train.py read.
  The same quantization.yml applies to it: layer names are unchanged and fixed-point formats do
  not depend on layer widths. Pruned class outputs (the last block) keep zero weights and bias, so they still
  give logit 0 without their mask.
* ``model.onnx``: the compact float model (log-probabilities).
* with a quantization solution: ``quantization.yml`` (a copy, so the bundle is self-contained),
  ``model.h`` / ``model.c`` / ``main.c`` (integer C99), ``test_vectors.txt`` (integer feature
  codes of the test split, one clip a line), ``expected_scores.txt`` (the integer engine's scores
  for them) and ``test_labels.txt`` (the true class of each line).
* ``export.yml``: the figures the summary prints.

Integer code and vectors that an earlier export into the same folder wrote (as its export.yml
lists) are removed when this export does not rewrite them, so a folder never mixes a new model
with stale C code or vectors. Nothing else is deleted: a quantization.yml there may be the user's.
"""
from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from deploy.c_export import c_model_memory, export_c
from deploy.c_frontend import PIPELINE_FILES, export_pcm_pipeline
from deploy.c_stream import STREAM_CONFIG, STREAM_FILES, export_stream
from data_loader.corpus import SILENCE
from data_loader import integer_frontend as ife
from data_loader.stream import plan_stream, render_blocks
from deploy.compact import compact_model
from deploy.firmware import FIRMWARE_FILES, HOST, STREAM_SECONDS, StreamTest, check_target, export_firmware, run_firmware
from deploy.integer_engine import IntegerModel
from deploy.onnx_export import check_onnx, export_onnx
from model.metric import balanced_accuracy, confusion_matrix, top1
from optimization.profiling import profile_model
from optimization.solutions import solution_text
from utils.atomic import make_folder, read_yaml, write_text, write_yaml
from utils.checkpoint import load_checkpoint, save_checkpoint
from utils.errors import UserError
from app.detection import KeywordClassifier, scan_frames, stored_settings
from app.restore import data_for_checkpoint, effective_solutions, normalization_of, restore_model


if TYPE_CHECKING:
    from model.registry import KeywordModel
    from utils.checkpoint import Checkpoint

COMPACT = "model_compact.pth"
ONNX = "model.onnx"
QUANTIZATION = "quantization.yml"
C_FILES = ("model.h", "model.c", "main.c")
VECTORS, SCORES, LABELS = "test_vectors.txt", "expected_scores.txt", "test_labels.txt"
SUMMARY = "export.yml"
INTEGER_FILES = (QUANTIZATION,) + C_FILES + (VECTORS, SCORES, LABELS)   # every export with -q writes these
DERIVED_FILES = INTEGER_FILES[1:] + FIRMWARE_FILES + PIPELINE_FILES + (STREAM_CONFIG,) + STREAM_FILES   # generated from the integer model: an earlier export's are removed


@dataclass
class ExportSummary:
    """What an export wrote and measured; accuracies are test-split top-1 fractions."""
    outdir: str
    files: list
    clips: int
    widths: list               # the compact model's arch_args widths (from its description)
    macs: int                  # of the compact model, per classification
    parameters: int
    compact_max_diff: float    # max |log-prob| difference masked vs compact float model
    onnx_max_diff: float       # max |log-prob| difference onnxruntime vs compact float model
    top1_float: float
    balanced_float: float
    top1_fixed_point: float = None
    balanced_fixed_point: float = None
    top1_integer: float = None
    balanced_integer: float = None
    integer_mismatches: int = None   # clips whose integer scores != simulated logits * 2^fl
    flash_bytes: int = None
    ram_bytes: int = None
    class_names: list = None       # the checkpoint's, one per score (also KWS_CLASS_NAMES in model.h)
    detector: dict = None          # the operating point the checkpoint carries (threshold, smoothing, ...)
    target: str = HOST             # "host", or the microcontroller the firmware files are for
    firmware: dict = None          # measured under QEMU (deploy.firmware.parse_run), when the tools are installed
    pcm_mismatches: int = None     # integer front end: clips whose PCM-computed input codes != the features'


def compact_checkpoint(ckpt: Checkpoint, compact: KeywordModel, source: str | os.PathLike) -> Checkpoint:
    """The Checkpoint of ``compact``: the source's, with the compact weights and widths, and
    without optimizer, scheduler, monitor and RNG state (their shapes and meaning belong to the
    uncompacted training run) or the stored solutions (their kernel indices do not fit)."""
    arch_args = {**dict(ckpt.arch_args or {}), "widths": list(compact.widths)}
    config = copy.deepcopy(ckpt.config)
    config.setdefault("arch", {})["args"] = dict(arch_args)
    return replace(ckpt, arch_args=arch_args, epoch=ckpt.epoch or 0, applied=None,
                   state_dict=compact.state_dict(), config=config, optimizer=None, lr_scheduler=None,
                   monitor_best=None, not_improved=None, rng_state=None, finetuned_from=None, solutions=None,
                   compacted_from=str(source))


def _scores(scores, labels):
    """(top-1, balanced accuracy) as test.py counts them: argmax, ties to the lowest class."""
    scores = torch.as_tensor(np.asarray(scores, dtype=np.float64))
    cm = confusion_matrix(scores, torch.as_tensor(labels))
    return top1(cm), balanced_accuracy(cm)


def _lines(rows):
    return "".join(" ".join(map(str, row)) + "\n" for row in rows)


def quantization_given(inputs: Sequence[str | os.PathLike | None]) -> bool:
    return bool(inputs[1]) and Path(inputs[1]).is_file()


def _check_outdir(outdir, inputs):
    """``inputs`` = (checkpoint, quantization, pruning). The bundle never writes over an input it
    was given, nor over a different quantization.yml in ``outdir`` that an earlier export did not
    write (it may be the user's); checked before anything is computed or written."""
    outdir = Path(outdir)
    for path in (outdir, *outdir.parents):
        if path.exists():
            if not path.is_dir():
                raise UserError(f"output folder {outdir}: {path} is a file, not a folder; give a folder with -o")
            break
    names = (COMPACT, ONNX, SUMMARY) + INTEGER_FILES + FIRMWARE_FILES + PIPELINE_FILES + (STREAM_CONFIG,) + STREAM_FILES
    targets = {(outdir / name).resolve(): name for name in names}
    for given in inputs:
        if given and Path(given).resolve() in targets:
            raise UserError(f"export into {outdir} would overwrite the input {given} "
                            f"(the bundle writes {targets[Path(given).resolve()]}); choose another -o")
    mine = outdir / QUANTIZATION
    if quantization_given(inputs) and mine.is_file() and QUANTIZATION not in _previous_files(outdir) \
            and mine.read_bytes() != Path(inputs[1]).read_bytes():
        raise UserError(f"{mine} exists, differs from {inputs[1]} and was not written by an earlier export "
                        f"(it may be yours); export into another folder with -o")
    return outdir


def _previous_files(outdir):
    """Files an earlier export into ``outdir`` wrote, from its export.yml (none if absent)."""
    if not (outdir / SUMMARY).is_file():
        return []
    files = read_yaml(outdir / SUMMARY, "earlier export summary").get("files")
    return [str(name) for name in files] if isinstance(files, list) else []


def export_bundle(checkpoint: str | os.PathLike, outdir: str | os.PathLike, quantization: str | os.PathLike | None = None,
                  pruning: str | os.PathLike | None = None, progress: bool = True, use_stored: bool = True,
                  target: str | None = HOST) -> ExportSummary:
    """Write the bundle into ``outdir`` and return an ExportSummary. Every input (checkpoint,
    solutions, full quantization of every layer) is validated before anything is written. The
    solutions a finetuned checkpoint carries are used where no file is given (``use_stored``).
    ``target`` other than "host" (deploy.firmware.TARGETS) also writes the firmware folder for that
    microcontroller; it needs a quantization solution."""
    target = target or HOST
    check_target(target)
    outdir = _check_outdir(outdir, (checkpoint, quantization, pruning))
    quantization, pruning = effective_solutions(load_checkpoint(checkpoint), quantization, pruning,
                                                use_stored, str(checkpoint))
    if target != HOST and not quantization:
        raise UserError(f"--target {target} needs an integer model, and {checkpoint} has no quantization "
                        f"solution: give one with -q (quantize.py writes it)")
    masked, ckpt = restore_model(checkpoint, None, pruning, use_stored=False)
    engine = None
    if quantization:
        masked_q, _ = restore_model(checkpoint, quantization, pruning, use_stored=False)
        engine = IntegerModel.from_model(masked_q)   # raises for a layer left in float
    data = data_for_checkpoint(ckpt, progress=progress)
    mean, std = normalization_of(ckpt)
    loader = data.eval_loader("test", mean, std)
    inputs, labels = loader.inputs, loader.labels.numpy()
    make_folder(outdir)
    previous = _previous_files(outdir)

    compact = compact_model(masked)
    save_checkpoint(outdir / COMPACT, compact_checkpoint(ckpt, compact, checkpoint))
    compact, _ = restore_model(outdir / COMPACT, use_stored=False)   # what users of the bundle get
    written = [COMPACT]
    with torch.no_grad():
        log_probs = compact(inputs)
        compact_diff = float((log_probs - masked(inputs)).abs().max())
    profile = profile_model(compact)

    export_onnx(compact, outdir / ONNX)
    onnx_diff = check_onnx(outdir / ONNX, compact, inputs)
    written.append(ONNX)

    summary = ExportSummary(
        outdir=str(outdir), files=written, clips=len(labels), widths=list(compact.widths),
        macs=profile.macs, parameters=profile.parameters, compact_max_diff=compact_diff,
        onnx_max_diff=onnx_diff, class_names=list(ckpt.names(data.keywords)), detector=ckpt.detector,
        target=target,
        **dict(zip(("top1_float", "balanced_float"), _scores(log_probs.numpy(), labels))))
    if engine is not None:
        codes, scores = _export_integer(summary, quantization, engine, inputs, labels, outdir)
        stream = None
        if getattr(data.features, "frontend", "float") == "integer":   # the C front end, PCM in
            files, pcm_codes = export_pcm_pipeline(engine, data.features, mean, std, data.split("test").pcm,
                                                   outdir)
            summary.files += files
            # the stream (stream.c, kws_push) at the checkpoint's operating point, as predict.py detects
            settings, _ = stored_settings(ckpt)
            stream_files = export_stream(engine, data.features, mean, std, settings, summary.class_names, outdir,
                                         skip=(SILENCE,))
            summary.files += [name for name in stream_files if name not in summary.files]
            codes = engine.quantize_input(inputs)
            summary.pcm_mismatches = int((pcm_codes.reshape(len(codes), -1) != codes.reshape(len(codes), -1))
                                         .any(axis=1).sum())
            if target != HOST and getattr(data, "corpus", None) is not None:
                stream = _firmware_stream(masked_q, ckpt, data.corpus, settings)
        if target != HOST:
            summary.files += export_firmware(engine, codes, scores, outdir, target, summary.macs, stream)
            summary.firmware = run_firmware(outdir)
    summary.files.append(SUMMARY)
    write_yaml(outdir / SUMMARY, asdict(summary))
    for name in DERIVED_FILES:
        if name in previous and name not in summary.files and (outdir / name).exists():
            (outdir / name).unlink()
    return summary


def _firmware_stream(model, ckpt, corpus, settings, seconds=STREAM_SECONDS) -> StreamTest:
    """The recording the firmware replays through its stream: the first ``seconds`` of the test
    split's stream (data_loader.stream: every clip once, in a seeded order, with pauses and the
    split's noise), and predict.py's detections on it (app.detection.scan_frames: the integer
    front end, engine and detector of the quantized ``model``)."""
    classifier = KeywordClassifier(model, ckpt)
    rate = classifier.sample_rate
    plan = plan_stream(corpus, "test", rate, seconds / 3600.0, 0)
    wanted, blocks, have = int(seconds * rate), [], 0
    for block in render_blocks(plan):
        blocks.append(block)
        have += len(block)
        if have >= wanted:
            break
    samples = np.concatenate(blocks)[:wanted]
    result = scan_frames(classifier, [samples], settings)
    hop = settings.hop_samples(rate)
    detections = [(round(d.start_s * rate / hop), d.label, round(d.score * (1 << 16))) for d in result.detections]
    return StreamTest(ife.to_pcm(samples), detections, len(result.starts_s), classifier.params.hop_length, rate)


def _export_integer(summary, quantization, engine, inputs, labels, outdir):
    """Integer engine and C code: scores checked against the simulated fixed-point model (the
    compact checkpoint with the same quantization.yml, loaded as a user would). Returns the test
    clips' input codes and integer scores."""
    write_text(outdir / QUANTIZATION, solution_text(quantization))
    simulated, _ = restore_model(outdir / COMPACT, outdir / QUANTIZATION, use_stored=False)
    with torch.no_grad():
        logits = simulated.logits(inputs).double().numpy()
    codes = engine.quantize_input(inputs)
    scores = engine.logits_int(codes)
    export_c(engine, outdir, summary.class_names)
    write_text(outdir / VECTORS, _lines(codes.reshape(len(codes), -1)))
    write_text(outdir / SCORES, _lines(scores))
    write_text(outdir / LABELS, _lines(labels[:, None]))
    summary.files += list(INTEGER_FILES)
    summary.top1_fixed_point, summary.balanced_fixed_point = _scores(logits, labels)
    summary.top1_integer, summary.balanced_integer = _scores(scores, labels)
    summary.integer_mismatches = int((scores != logits * 2.0 ** engine.output_fl).any(axis=1).sum())
    summary.flash_bytes, summary.ram_bytes = c_model_memory(engine)
    return codes, scores


def format_summary(summary: ExportSummary) -> str:
    lines = [f"Wrote {summary.outdir}: {', '.join(summary.files)}",
             f"Compact model: widths {tuple(summary.widths)}, {summary.macs:,} MACs, "
             f"{summary.parameters:,} parameters; max |log-prob| difference to the masked model "
             f"{summary.compact_max_diff:.2e}",
             f"ONNX: max |log-prob| difference to PyTorch {summary.onnx_max_diff:.2e} "
             f"on {summary.clips} test clips"]
    if summary.detector:
        d = summary.detector
        lines.append(f"Detector: threshold {d['threshold']:g}, smoothing {d['smooth_ms']:g} ms (calibrated for "
                     f"{d['target_false_alarms_per_hour']:g} false alarm(s)/h on the validation stream; in export.yml)")
    else:
        lines.append("Detector: no calibrated operating point in the checkpoint (predict.py's default threshold)")
    if summary.top1_integer is None:
        lines.append(f"Test top-1 ({summary.clips} clips): float {summary.top1_float:.4f}")
        lines.append(f"Test balanced accuracy: float {summary.balanced_float:.4f}")
        lines.append("Integer inference and C code skipped: they need a quantization solution (-q)")
    else:
        lines.append(f"Test top-1 ({summary.clips} clips): float {summary.top1_float:.4f} | "
                     f"fixed point {summary.top1_fixed_point:.4f} | "
                     f"integer {summary.top1_integer:.4f}")
        lines.append(f"Test balanced accuracy: float {summary.balanced_float:.4f} | "
                     f"fixed point {summary.balanced_fixed_point:.4f} | "
                     f"integer {summary.balanced_integer:.4f}")
        lines.append(f"Integer scores vs simulated logits: {summary.integer_mismatches} of "
                     f"{summary.clips} clips differ")
        if summary.pcm_mismatches is not None:
            lines.append(f"Integer front end (PCM in, main_pcm.c) vs the features: {summary.pcm_mismatches} of "
                         f"{summary.clips} clips' input codes differ")
        lines.append(f"C model: flash {summary.flash_bytes:,} bytes (weights and biases), "
                     f"RAM {summary.ram_bytes:,} bytes (largest pair of live activation buffers)")
    if summary.firmware:
        fw = summary.firmware
        layers = ", ".join(f"{la['name']} {la['instructions']:,} ({la['instructions_per_mac']:.2f} per MAC)"
                           for la in fw["layers"])
        detections = "" if fw["detections"] is None else (
            f", detections {'identical' if fw['detections_identical'] else 'DIFFER'} ({fw['detections']})")
        lines.append(f"Firmware on {summary.target} (QEMU): scores {'identical' if fw['scores_identical'] else 'DIFFER'} "
                     f"on {fw['clips']} clips{detections}; flash {fw['flash_bytes']:,} B, RAM {fw['ram_bytes']:,} B; "
                     f"{fw['instructions']:,} instructions per inference ({fw['instructions_per_mac']:.2f} per MAC); "
                     f"{fw['core_percent']:.2f}% of an 80 MHz core; per layer: {layers} (in export.yml)")
        if fw["stream"]:
            st = fw["stream"]
            lines.append(f"Firmware stream: {st['samples']:,} samples in "
                         f"{st['hops']:,} hops, instructions per hop mean {st['instructions_per_hop_mean']:,}, "
                         f"max {st['instructions_per_hop_max']:,} (front end, model every configured hop, detector); "
                         f"front end alone {st['frontend_frame_instructions']:,} per frame, clamp, DCT and fold "
                         f"{st['window_frame_instructions']:,} per frame of a window")
    return "\n".join(lines)
