"""Figures of the quantization and pruning searches, saved as PNG next to their YAML solutions.

Figures are built on ``matplotlib.figure.Figure`` and rendered by the Agg canvas, never through
pyplot: no GUI backend is touched and no global figure state leaks between calls. matplotlib is
imported when a figure is drawn, not when a script starts.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from utils.atomic import figure_png, write_bytes

METRIC_NAMES = {"top1": "top-1", "balanced_accuracy": "balanced accuracy",
                "stream_recall_at_target": "keywords found at the target false alarms/h (stream)",
                "stream_mean_recall": "keywords found at 1-50x the target false alarms/h (stream)"}


def _figure():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(6.4, 4.2))
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _reference_lines(ax, baseline, floor) -> None:
    ax.axhline(baseline, color="gray", linestyle=":", label=f"baseline {baseline:.4f}")
    ax.axhline(floor, color="red", linestyle="--", label=f"floor {floor:.4f}")


def _png(fig, path):
    png = figure_png(fig)
    if path is not None:
        write_bytes(path, png)
    return png


def axis_label(metric: str) -> str:
    """The y axis of a search figure: the decision metric its points are, on the validation split."""
    return f"validation {METRIC_NAMES.get(metric, metric)}"


def plot_quantization(sweeps: Mapping[str, Mapping[int, float]], baseline: float, floor: float,
                      path: str | os.PathLike | None = None, metric: str = "top1") -> bytes:
    """The decision ``metric`` against bitwidth, one line per group sweep (``{label: {bitwidth:
    score}}``): PNG bytes, also written to ``path`` when given."""
    fig, ax = _figure()
    for label, sweep in sweeps.items():
        bits = sorted(sweep, reverse=True)
        ax.plot(bits, [sweep[b] for b in bits], marker="o", label=label)
    _reference_lines(ax, baseline, floor)
    ax.set_xticks(sorted({b for sweep in sweeps.values() for b in sweep}))
    ax.invert_xaxis()  # the search runs from wide to narrow formats
    ax.set_xlabel("bitwidth")
    ax.set_ylabel(axis_label(metric))
    ax.set_title("Dynamic fixed-point quantization")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return _png(fig, path)


def plot_pruning(rates: Sequence[float], accuracies: Sequence[float], accepted: Sequence[bool], baseline: float,
                 floor: float, path: str | os.PathLike | None = None, metric: str = "top1") -> bytes:

    """The decision ``metric`` against total pruning rate (fractions) per search step; rejected
    steps marked: PNG bytes, also written to ``path`` when given."""
    fig, ax = _figure()
    kept = [(r * 100, a) for r, a, ok in zip(rates, accuracies, accepted) if ok]
    ax.plot([0.0] + [r for r, _ in kept], [baseline] + [a for _, a in kept], marker=".",
            label="kept steps")
    rejected = [(r * 100, a) for r, a, ok in zip(rates, accuracies, accepted) if not ok]
    if rejected:
        ax.plot(*zip(*rejected), "rx", markersize=9, label="rejected step")
    _reference_lines(ax, baseline, floor)
    ax.set_xlabel("parameters pruned (%)")
    ax.set_ylabel(axis_label(metric))
    ax.set_title("Minimum-weight kernel pruning")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return _png(fig, path)
