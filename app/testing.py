"""What test.py does: evaluate a checkpoint (optionally quantized and/or pruned) on a test split
and report the lab's confusion matrix, per-sample metrics and per-class recall and precision."""
from pathlib import Path

import pandas as pd
import torch

import model.loss as module_loss
from data_loader.dataset import SplitData
from data_loader.data_loaders import InMemoryLoader
from model.metric import precisions, recalls
from trainer.evaluation import evaluate
from utils import atomic
from app.restore import data_for_checkpoint, normalization_of, restore_model
from utils.plots import confusion_figure


def evaluation_split(data, everything=False):
    """The test split, or every clip of the corpus (train + validation + test) with ``everything``."""
    if not everything:
        return data.split("test")
    parts = [data.split(s) for s in ("train", "validation", "test")]
    return SplitData(torch.cat([p.mel for p in parts]), torch.cat([p.labels for p in parts]),
                     sum((p.names for p in parts), []), sum((p.skipped for p in parts), []))


def run_test(checkpoint, quantization=None, pruning=None, data_dir=None, everything=False, progress=True,
             use_stored=True):
    model, ckpt = restore_model(checkpoint, quantization, pruning, use_stored)
    data = data_for_checkpoint(ckpt, data_dir, progress=progress)
    if data_dir is not None:
        data.noise_clips = {s: 0 for s in data.noise_clips}  # another corpus: its listed clips only
    split = evaluation_split(data, everything)
    mean, std = normalization_of(ckpt)
    loader = InMemoryLoader(split.mel, split.labels, data.transform(mean, std), data.eval_batch_size)
    criterion = module_loss.loss_by_name(ckpt.config.get("loss", "nll_loss"), "the checkpoint's loss")
    class_names = ("unknown",) + tuple(ckpt.keywords or data.keywords)
    result = evaluate(model, loader, criterion, num_classes=len(class_names))
    result["class_names"] = class_names
    result["applied"] = ckpt.applied or {}
    return result


def confusion_table(targets, predictions, n_classes):
    """The lab's crosstab: rows 'True', columns 'Predicted', 'All' margins; every class shown."""
    cats = pd.CategoricalDtype(list(range(n_classes)))
    true = pd.Series(targets.numpy(), name="True").astype(cats)
    pred = pd.Series(predictions.numpy(), name="Predicted").astype(cats)
    return pd.crosstab(true, pred, margins=True, dropna=False)


def class_scores(cm):
    """Per-class recall and precision from the confusion matrix, plus their macro averages (a
    class never predicted has precision 0, a class absent from the data is left out of the
    averages; the macro recall is the balanced accuracy)."""
    cm = torch.as_tensor(cm)
    table = pd.DataFrame({"class": range(len(cm)), "support": cm.sum(dim=1).tolist(),
                          "recall": recalls(cm).tolist(), "precision": precisions(cm).tolist()})
    table = table.set_index("class")
    present = table[table["support"] > 0]
    return table, float(present["recall"].mean()), float(present["precision"].mean())


def format_report(result):
    n = len(result["class_names"])
    cm = result["confusion"]
    lines = [str(confusion_table(result["targets"], result["predictions"], n))]
    lines.append(f"Metrics: {{'loss': {result['loss']}, 'top1': {result['top1']}}}")
    background = int(cm[0].sum())
    alarms = background - int(cm[0, 0])
    lines.append(f"Balanced accuracy: {result['balanced_accuracy']:.4f}  False alarms: "
                 f"{100 * result['false_alarm_rate']:.2f}% ({alarms} of {background} background clips "
                 f"classified as a keyword)")
    if result.get("ties"):
        lines.append(f"Tied top scores: {result['ties']} clips (each counted as the lowest tied class, "
                     f"as the deployed model's argmax does)")
    table, macro_recall, macro_precision = class_scores(cm)
    lines.append("Per class:")
    for c, row in table.iterrows():
        lines.append(f"  {c} {result['class_names'][c]:<8} recall {row['recall']:.4f}  "
                     f"precision {row['precision']:.4f}  (n={int(row['support'])})")
    lines.append(f"Macro recall: {macro_recall:.4f}  Macro precision: {macro_precision:.4f}")
    return "\n".join(lines)


def save_report(result, checkpoint, quantization=None, pruning=None):
    """test-<variant>.yml and a confusion-matrix PNG beside it, next to the checkpoint."""
    applied = result.get("applied") or {}
    quantization = applied.get("quantization", quantization)
    pruning = applied.get("pruning", pruning)
    variant = "-".join(v for v, on in (("quantized", quantization), ("pruned", pruning)) if on) or "float"
    stem = Path(checkpoint).with_name(f"{Path(checkpoint).stem}-test-{variant}")
    n = len(result["class_names"])
    table, macro_recall, macro_precision = class_scores(result["confusion"])
    atomic.write_yaml(stem.with_suffix(".yml"), {
        "checkpoint": str(checkpoint), "quantization": quantization and str(quantization),
        "pruning": pruning and str(pruning), "loss": float(result["loss"]), "top1": float(result["top1"]),
        "balanced_accuracy": float(result["balanced_accuracy"]),
        "false_alarm_rate": float(result["false_alarm_rate"]), "ties": int(result.get("ties", 0)),
        "samples": int(result["n"]),
        "recall": {result["class_names"][c]: float(r) for c, r in table["recall"].items()},
        "precision": {result["class_names"][c]: float(p) for c, p in table["precision"].items()},
        "macro_recall": macro_recall, "macro_precision": macro_precision,
        "confusion": confusion_table(result["targets"], result["predictions"], n).values.tolist()})
    atomic.save_figure(confusion_figure(result, n), stem.with_suffix(".png"))
    return stem.with_suffix(".yml")
