"""What test.py does: evaluate a checkpoint (optionally quantized and/or pruned) on a test split
and report the lab's confusion matrix, per-sample metrics and per-class recall and precision."""
from __future__ import annotations

import errno
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from data_loader.dataset import SplitData
from data_loader.data_loaders import InMemoryLoader
from model.metric import false_alarm_counts, precisions, recalls, silence_class
from trainer.evaluation import evaluate
from utils import atomic
from app.restore import CorpusData, SolutionSource, data_for_checkpoint, loss_of, normalization_of, restore_model
from utils.errors import UserError
from utils.plots import confusion_png


def evaluation_split(data: CorpusData, everything: bool = False) -> SplitData:
    """The test split, or every clip of the corpus (train + validation + test) with ``everything``."""
    if not everything:
        return data.split("test")
    parts = [data.split(s) for s in ("train", "validation", "test")]
    mfcc = torch.cat([p.mfcc for p in parts]) if all(p.mfcc is not None for p in parts) else None
    return SplitData(torch.cat([p.mel for p in parts]), torch.cat([p.labels for p in parts]),
                     sum((p.names for p in parts), []), sum((p.skipped for p in parts), []), mfcc)


def run_test(checkpoint: str | os.PathLike, quantization: SolutionSource | None = None,
             pruning: SolutionSource | None = None, data_dir: str | os.PathLike | None = None,
             everything: bool = False, progress: bool = True, use_stored: bool = True) -> dict[str, Any]:
    model, ckpt = restore_model(checkpoint, quantization, pruning, use_stored)
    data = data_for_checkpoint(ckpt, data_dir, progress=progress)
    if data_dir is not None:
        data.noise_clips = {s: 0 for s in data.noise_clips}  # another corpus: its listed clips only
    split = evaluation_split(data, everything)
    mean, std = normalization_of(ckpt)
    loader = InMemoryLoader(split.mel, split.labels, data.transform(mean, std), data.eval_batch_size,
                            mfcc=split.mfcc)
    criterion = loss_of(ckpt)
    class_names = ckpt.names(data.keywords)
    result = evaluate(model, loader, criterion, num_classes=len(class_names), silence=silence_class(class_names))
    result["class_names"] = class_names
    result["applied"] = ckpt.applied or {}
    result["evaluated"] = (f"{'every clip (train + validation + test)' if everything else 'test split'} of "
                           f"{data.data_dir} ({int(result['n'])} clips)")
    return result


def confusion_table(cm: torch.Tensor) -> list[list[int]]:
    """The lab's crosstab as rows of counts: the confusion matrix with an 'All' column of row
    sums and an 'All' row of column sums (every class shown)."""
    rows = [[int(v) for v in row] + [int(sum(row))] for row in torch.as_tensor(cm).tolist()]
    return rows + [[sum(col) for col in zip(*rows)]]


LAB_CLASSES = 4  # up to the lab's four classes the rows are numbered only, as its crosstab prints them


def format_confusion(table: Sequence[Sequence[int]], names: Sequence[str] | None = None) -> str:
    """The table as pandas prints the lab's ``pd.crosstab(true, pred, margins=True)``: rows 'True',
    columns 'Predicted' (formatted here, so test.py does not import pandas for one table). With
    more classes than the lab's and ``names``, each row also says its class name (columns stay
    numbered, so 12 or 35 columns still fit a terminal)."""
    n = len(table) - 1
    labels, columns = [str(i) for i in range(n)] + ["All"], [str(i) for i in range(n)] + ["All"]
    if names is not None and n > LAB_CLASSES:
        labels = [f"{i} {name}" for i, name in enumerate(names)] + ["All"]
    first = max(len("Predicted"), len("True"), *(len(label) for label in labels))
    widths = [max(len(c), *(len(str(row[j])) for row in table)) for j, c in enumerate(columns)]
    head = "Predicted".ljust(first) + "".join("  " + c.rjust(w) for c, w in zip(columns, widths))
    lines = [head, "True".ljust(len(head))]
    lines += [label.ljust(first) + "".join("  " + str(v).rjust(w) for v, w in zip(row, widths))
              for label, row in zip(labels, table)]
    return "\n".join(lines)


def class_scores(cm: torch.Tensor) -> tuple[list[tuple[int, float, float]], float, float]:
    """Per-class (support, recall, precision) from the confusion matrix, plus their macro averages
    (a class never predicted has precision 0, a class absent from the data is left out of the
    averages; the macro recall is the balanced accuracy)."""
    cm = torch.as_tensor(cm)
    table = list(zip(cm.sum(dim=1).tolist(), recalls(cm).tolist(), precisions(cm).tolist()))
    present = [(r, p) for support, r, p in table if support > 0]
    if not present:
        return table, float("nan"), float("nan")
    return table, sum(r for r, _ in present) / len(present), sum(p for _, p in present) / len(present)


def format_report(result: Mapping[str, Any]) -> str:
    cm = result["confusion"]
    lines = [format_confusion(confusion_table(cm), result["class_names"])]
    lines.append(f"Metrics: {{'loss': {result['loss']}, 'top1': {result['top1']}}}")
    silence = silence_class(result["class_names"])
    alarms, background = false_alarm_counts(cm, silence)
    clips = "background clips" if silence is None else "unknown-word and silence clips"
    lines.append(f"Balanced accuracy: {result['balanced_accuracy']:.4f}  False alarms: "
                 f"{100 * result['false_alarm_rate']:.2f}% ({alarms} of {background} {clips} "
                 f"classified as a keyword)")
    if result.get("ties"):
        lines.append(f"Tied top scores: {result['ties']} clips (each counted as the lowest tied class, "
                     f"as the deployed model's argmax does)")
    table, macro_recall, macro_precision = class_scores(cm)
    lines.append("Per class:")
    for c, (support, recall, precision) in enumerate(table):
        lines.append(f"  {c:>{len(str(len(table) - 1))}} {result['class_names'][c]:<8} recall {recall:.4f}  "
                     f"precision {precision:.4f}  (n={int(support)})")
    lines.append(f"Macro recall: {macro_recall:.4f}  Macro precision: {macro_precision:.4f}")
    return "\n".join(lines)


def report_folder(out_dir: str | os.PathLike) -> Path:
    """``-o``: an existing folder the reports go into."""
    folder = Path(out_dir)
    if not folder.is_dir():
        raise UserError(f"-o {out_dir} is not a folder; create it or name another")
    return folder


READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)


def save_beside(save: Callable[[Path], Path], checkpoint: str | os.PathLike,
                out_dir: str | os.PathLike | None = None) -> tuple[Path, str | None]:
    """``save(folder)`` into ``-o`` when given, else beside the checkpoint; a checkpoint kept in a
    folder this process cannot write to (read-only, no permission) gets its report in the current
    folder instead, and the evaluation is not lost. Returns (report path, a one-line note or None)."""
    if out_dir is not None:
        return save(report_folder(out_dir)), None
    try:
        return save(Path(checkpoint).parent), None
    except atomic.WriteError as e:
        if e.errno not in READ_ONLY or Path.cwd().resolve() == Path(checkpoint).parent.resolve():
            raise
        note = (f"warning: {Path(checkpoint).parent} cannot be written ({os.strerror(e.errno)}); the report "
                f"goes to the current folder {Path.cwd()} (-o chooses another)")
        return save(Path.cwd()), note


def save_report(result: Mapping[str, Any], checkpoint: str | os.PathLike, quantization: SolutionSource | None = None,
                pruning: SolutionSource | None = None, out_dir: str | os.PathLike | None = None) -> tuple[Path, str | None]:

    """test-<variant>.yml and a confusion-matrix PNG beside it, next to the checkpoint (or in
    ``out_dir``; see save_beside), both replaced together. Returns (YAML path, note)."""
    return save_beside(lambda folder: _write_report(result, checkpoint, quantization, pruning, folder),
                       checkpoint, out_dir)


def _write_report(result, checkpoint, quantization, pruning, folder):
    applied = result.get("applied") or {}
    quantization = applied.get("quantization", quantization)
    pruning = applied.get("pruning", pruning)
    variant = "-".join(v for v, on in (("quantized", quantization), ("pruned", pruning)) if on) or "float"
    stem = Path(folder) / f"{Path(checkpoint).stem}-test-{variant}"
    n = len(result["class_names"])
    table, macro_recall, macro_precision = class_scores(result["confusion"])
    atomic.write_together({stem.with_suffix(".yml"): atomic.yaml_bytes({
        "checkpoint": str(checkpoint), "quantization": quantization and str(quantization),
        "pruning": pruning and str(pruning), "loss": float(result["loss"]), "top1": float(result["top1"]),
        "balanced_accuracy": float(result["balanced_accuracy"]),
        "false_alarm_rate": float(result["false_alarm_rate"]), "ties": int(result.get("ties", 0)),
        "samples": int(result["n"]),
        "recall": {result["class_names"][c]: float(r) for c, (_, r, _) in enumerate(table)},
        "precision": {result["class_names"][c]: float(p) for c, (_, _, p) in enumerate(table)},
        "macro_recall": macro_recall, "macro_precision": macro_precision,
        "confusion": confusion_table(result["confusion"])}),
        stem.with_suffix(".png"): confusion_png(result, n)})
    return stem.with_suffix(".yml")
