"""Minimum-weight kernel pruning (Molchanov et al. 2017).

An output kernel (a conv filter or an FC neuron) whose weights are small contributes little, so
kernels are removed one at a time in order of their mean squared weight (a mean, not a sum, so a
9-weight conv filter and a 184-weight FC neuron compare fairly) until validation top-1 would fall
more than ``error_margin`` percentage points below the baseline; the last set that stayed within
the margin is the solution. The class-output layer (the last block of the model's description) is
never pruned, nor a layer's last kernel. A depthwise conv's kernel k reads channel k of the block
before it only, so it is pruned together with that channel (it is not a candidate of its own), and
both count in the pruning rate.

The weights do not change during the search, so the order is computed once and each step costs
exactly one ``evaluate(model)``: a step only flips one entry of a layer's kernel mask.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from configuration import schema
from fixedpoint.graph import describe
from fixedpoint.pruning_rules import tied_depthwise
from fixedpoint.layers import FixedPointConv2d
from optimization.plots import plot_pruning
from optimization.scores import RULE, format_scores, passes
from utils.atomic import write_together, yaml_bytes
from utils.progress import progress_bar, write_line

if TYPE_CHECKING:
    from fixedpoint.layers import FixedPointLinear
    from model.registry import KeywordModel
    from optimization.scores import Scores

MARGIN_EXCEEDED = ("Pruning stops: the next kernel would take the metric below the floor; it stays, "
                   "and the kernels pruned so far are the solution")


@dataclass
class PruningStep:
    """One evaluated removal; a rejected step (below the floor) was undone."""
    layer: str
    kernel: int
    accuracy: float
    rate: float       # total pruning rate with this kernel removed
    accepted: bool


@dataclass
class LayerPruning:
    kind: str                 # "Conv" or "Linear"
    kernels: int
    pruned: int
    parameters: int           # the layer's weights (biases are not counted, as in the lab)
    pruned_parameters: int    # the pruned kernels' own weights


@dataclass
class PruningResult:
    baseline: float
    floor: float
    steps: list               # PruningStep per evaluation after the baseline
    pruned: dict              # layer -> sorted pruned kernel indices (every layer listed)
    layers: dict              # layer -> LayerPruning
    accuracy: float           # decision metric of the solution (at its step; baseline if none)
    rate: float               # pruned kernels' weights / all conv and linear weights (the lab's rate)
    metric: str = "top1"
    scores: dict = None       # every metric of the baseline and the solution, when reported
    notes: list = None        # back-off steps of the combined check


def kernel_weights(layer: FixedPointConv2d | FixedPointLinear) -> int:
    """Weights of one output kernel of ``layer``. The pruning rate counts weights only, as the lab
    did (of 12,680 in the default model): biases are not part of the rate."""
    return layer.weight[0].numel()


def candidate_layers(model: KeywordModel) -> dict[str, list[str]]:
    """Name -> the depthwise layers pruned with it, for every layer whose kernels are pruning
    candidates: all but the class output and the depthwise layers."""
    graph = describe(model)
    return {name: followers for name, followers in tied_depthwise(graph).items() if name != graph.output.name}


def kernel_ranking(model: KeywordModel) -> list[tuple[str, int, float]]:
    """Pruning candidates as (layer, kernel, mean squared weight), smallest first (ties: forward
    order, then kernel index): unpruned kernels of every candidate layer."""
    layers = describe(model).layers()
    ranking = []
    with torch.no_grad():
        for name in candidate_layers(model):
            layer = layers[name]
            criteria = layer.weight.detach().double().flatten(1).pow(2).mean(dim=1)
            ranking += [(name, k, float(criteria[k])) for k in range(len(criteria))
                        if layer.kernel_mask[k] != 0]
    order = {name: i for i, name in enumerate(layers)}
    return sorted(ranking, key=lambda c: (c[2], order[c[0]], c[1]))


class _Groups:
    """The model's layers and, for each candidate, the depthwise layers tied to it: a kernel is
    masked, restored and counted with its group. ``remaining``: the unpruned kernels per layer;
    ``ranking``: the candidates in pruning order (kernel_ranking)."""

    def __init__(self, model) -> None:
        self.layers = describe(model).layers()
        self.tied = candidate_layers(model)
        self.total_weights = sum(layer.weight.numel() for layer in self.layers.values())
        self.remaining = {name: int((layer.kernel_mask != 0).sum()) for name, layer in self.layers.items()}
        self.ranking = kernel_ranking(model)

    def set_mask(self, name: str, kernel: int, value: float) -> None:
        for member in [name] + self.tied[name]:
            self.layers[member].kernel_mask[kernel] = value

    def weights(self, name: str) -> int:
        return sum(kernel_weights(self.layers[member]) for member in [name] + self.tied[name])


class _Scorer:
    """``evaluate(model)`` reduced to the decision metric; ``last`` keeps its full scores."""

    def __init__(self, evaluate, metric) -> None:
        self.evaluate, self.metric, self.last = evaluate, metric, None

    def __call__(self, model):
        scores = self.evaluate(model)
        value = float(scores[self.metric]) if isinstance(scores, dict) else float(scores)
        self.last = scores
        return value


@dataclass
class _Search:
    """The search's state: the evaluated steps, and the running solution's pruned weights,
    decision metric and full scores."""
    pruned_weights: int
    accuracy: float = None
    scores: object = None
    steps: list = field(default_factory=list)


def search_pruning(model: KeywordModel, evaluate: Callable[[KeywordModel], Scores], config: dict | None,
                   combined_floor: float | None = None) -> PruningResult:
    """Greedy minimum-weight kernel pruning within the error margin; ``evaluate(model)`` returns
    the validation decision metric (or a dict of metrics) and is called once for the baseline and
    once per step. ``combined_floor``: a second floor the solution must also meet (the
    quantization's floor when the model searched is quantized); the last pruned kernels are
    restored, one per evaluation, until it does. On return the model carries the solution (masks
    set, pruned weights and biases zeroed); on an exception its original masks are restored.
    Kernels pruned before the call stay pruned and are counted."""
    cfg = schema.parse_pruning_config(config)
    score, groups = _Scorer(evaluate, cfg.metric), _Groups(model)
    layers, remaining = groups.layers, groups.remaining
    original = {name: layer.kernel_mask.clone() for name, layer in layers.items()}
    search = _Search(sum(len(layer.pruned_kernels) * kernel_weights(layer) for layer in layers.values()))
    budget = sum(remaining[name] - 1 for name in groups.tied if remaining[name] > 1)
    if cfg.max_steps is not None:
        budget = min(budget, cfg.max_steps)
    bar = progress_bar(total=budget, desc="pruning", unit="step")
    notes = []
    try:
        baseline = search.accuracy = score(model)
        baseline_scores = search.scores = score.last
        floor = baseline - cfg.error_margin / 100
        _prune_greedily(model, groups, score, search, budget, floor, bar)
        if combined_floor is not None:
            notes = _back_off(model, groups, score, search, combined_floor)
        for layer in layers.values():
            layer.prune_kernels(layer.pruned_kernels)
    except BaseException:
        for name, layer in layers.items():
            layer.kernel_mask.copy_(original[name])
        raise
    finally:
        bar.total = bar.n
        bar.close()
    summary = {name: LayerPruning("Conv" if isinstance(layer, FixedPointConv2d) else "Linear",
                                  layer.out_channels_or_features, len(layer.pruned_kernels),
                                  layer.weight.numel(),
                                  len(layer.pruned_kernels) * kernel_weights(layer))
               for name, layer in layers.items()}
    pruned = {name: layer.pruned_kernels for name, layer in layers.items()}
    return PruningResult(baseline, floor, search.steps, pruned, summary, search.accuracy,
                         search.pruned_weights / groups.total_weights, cfg.metric,
                         {"baseline": baseline_scores, "solution": search.scores}, notes)


def _prune_greedily(model, groups, score, search, budget, floor, bar) -> None:
    """Remove the kernels in ranking order, one evaluation each, until the budget is spent or a
    step would fall below ``floor`` (that kernel stays); accepted steps update the solution."""
    steps, remaining = search.steps, groups.remaining
    for name, kernel, _ in groups.ranking:
        if len(steps) == budget:
            break
        if remaining[name] == 1:
            continue
        groups.set_mask(name, kernel, 0.0)
        top1 = score(model)
        rate = (search.pruned_weights + groups.weights(name)) / groups.total_weights
        steps.append(PruningStep(name, kernel, top1, rate, passes(top1, floor)))
        bar.update()
        if not steps[-1].accepted:
            groups.set_mask(name, kernel, 1.0)
            write_line(MARGIN_EXCEEDED)
            break
        remaining[name] -= 1
        search.pruned_weights += groups.weights(name)
        search.accuracy, search.scores = top1, score.last


def _back_off(model, groups, score, search, combined_floor):
    """Restore the last accepted kernels, one evaluation each, until the solution meets
    ``combined_floor``; returns the notes for the report."""
    solution, accepted, notes = search, [s for s in search.steps if s.accepted], []
    while not passes(solution.accuracy, combined_floor) and accepted:
        last = accepted.pop()
        groups.set_mask(last.layer, last.kernel, 1.0)
        solution.pruned_weights -= groups.weights(last.layer)
        before, solution.accuracy = solution.accuracy, score(model)
        solution.scores = score.last
        notes.append(f"Back-off: combined {score.metric} {before:.5f} < floor {combined_floor:.5f}; "
                     f"restored {last.layer} kernel {last.kernel} -> {solution.accuracy:.5f}")
    if not passes(solution.accuracy, combined_floor):
        notes.append(f"Combined {score.metric} {solution.accuracy:.5f} is below the floor {combined_floor:.5f} "
                     f"without any pruning: the quantization alone misses it")
    return notes


def format_report(result: PruningResult, quantized: bool = False) -> str:
    """The lab's pruning report; ``quantized``: the baseline is the quantized model's (prune.py -q).
    Back-off notes come before the table they changed."""
    scores = result.scores or {}
    base = format_scores(scores.get("baseline", result.baseline), result.metric, False)
    lines = [RULE, "Network pruning results.",
             f"Baseline {'(quantized model)' if quantized else 'float32'}: {base}"]
    lines += list(result.notes or [])
    lines.append("Kernel pruning results:")
    for name, s in result.layers.items():
        kernels = f"{s.pruned}/{s.kernels} kernels pruned"
        lines.append(f"Layer {name:<8} | {s.kind:<8} | {kernels:<20} | "
                     f"{100 * s.pruned_parameters / s.parameters:.2f}% parameters pruned")
    solution = format_scores(scores.get("solution", result.accuracy), result.metric, False)
    lines += [f"Total pruning rate: {100 * result.rate:.2f}%", f"Accuracy: {solution}",
              f"Decision metric: {result.metric}, floor {result.floor:.5f} (baseline {result.baseline:.5f})"]
    lines.append(RULE)
    return "\n".join(lines)


def save_pruning(path: str | os.PathLike, result: PruningResult, config: dict | None) -> Path:

    """Write pruning.yml atomically (keys ``config``, ``results``, ``pruned_filters``) and the
    accuracy-vs-pruning-rate figure next to it (same name, ``.png``); returns the figure's path."""
    path = Path(path)
    results = {"baseline": result.baseline, "floor": result.floor,
               "steps": [{"layer": s.layer, "kernel": s.kernel, "accuracy": s.accuracy,
                          "rate": s.rate, "accepted": s.accepted} for s in result.steps],
               "accuracy": result.accuracy, "rate": result.rate, "metric": result.metric,
               "notes": list(result.notes or [])}
    if result.scores:
        results["scores"] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in result.scores.items()}
    figure = path.with_suffix(".png")
    write_together({   # the YAML and its figure are replaced together or not at all
        path: yaml_bytes({"config": schema.parse_pruning_config(config).to_dict(), "results": results,
                          "pruned_filters": {name: list(k) for name, k in result.pruned.items()}}),
        figure: plot_pruning([s.rate for s in result.steps], [s.accuracy for s in result.steps],
                             [s.accepted for s in result.steps], result.baseline, result.floor,
                             metric=result.metric)})
    return figure
