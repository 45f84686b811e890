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
from dataclasses import dataclass
from pathlib import Path

import torch

from configuration import schema
from fixedpoint.graph import describe
from fixedpoint.pruning_rules import tied_depthwise
from fixedpoint.layers import FixedPointConv2d
from optimization.plots import plot_pruning
from optimization.scores import RULE, format_scores, passes
from utils.atomic import write_together, yaml_bytes
from utils.progress import progress_bar, write_line

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


def kernel_weights(layer):
    """Weights of one output kernel of ``layer``. The pruning rate counts weights only, as the lab
    did (of 12,680 in the default model): biases are not part of the rate."""
    return layer.weight[0].numel()


def candidate_layers(model):
    """Name -> the depthwise layers pruned with it, for every layer whose kernels are pruning
    candidates: all but the class output and the depthwise layers."""
    graph = describe(model)
    return {name: followers for name, followers in tied_depthwise(graph).items() if name != graph.output.name}


def kernel_ranking(model):
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


def search_pruning(model, evaluate, config, combined_floor=None):
    """Greedy minimum-weight kernel pruning within the error margin; ``evaluate(model)`` returns
    the validation decision metric (or a dict of metrics) and is called once for the baseline and
    once per step. ``combined_floor``: a second floor the solution must also meet (the
    quantization's floor when the model searched is quantized); the last pruned kernels are
    restored, one per evaluation, until it does. On return the model carries the solution (masks
    set, pruned weights and biases zeroed); on an exception its original masks are restored.
    Kernels pruned before the call stay pruned and are counted."""
    cfg = schema.parse_pruning_config(config)
    details = {}

    def score(m):
        scores = evaluate(m)
        value = float(scores[cfg.metric]) if isinstance(scores, dict) else float(scores)
        details["last"] = scores
        return value
    layers = describe(model).layers()
    tied = candidate_layers(model)

    def set_mask(name, kernel, value):
        for member in [name] + tied[name]:
            layers[member].kernel_mask[kernel] = value

    def group_weights(name):
        return sum(kernel_weights(layers[member]) for member in [name] + tied[name])
    total_weights = sum(layer.weight.numel() for layer in layers.values())
    original = {name: layer.kernel_mask.clone() for name, layer in layers.items()}
    remaining = {name: int((layer.kernel_mask != 0).sum()) for name, layer in layers.items()}
    pruned_weights = sum(len(layer.pruned_kernels) * kernel_weights(layer) for layer in layers.values())
    ranking = kernel_ranking(model)
    budget = sum(remaining[name] - 1 for name in tied if remaining[name] > 1)
    if cfg.max_steps is not None:
        budget = min(budget, cfg.max_steps)
    bar = progress_bar(total=budget, desc="pruning", unit="step")
    steps, notes = [], []
    try:
        baseline = accuracy = score(model)
        details["baseline"] = details["solution"] = details["last"]
        floor = baseline - cfg.error_margin / 100
        for name, kernel, _ in ranking:
            if len(steps) == budget:
                break
            layer = layers[name]
            if remaining[name] == 1:
                continue
            set_mask(name, kernel, 0.0)
            top1 = score(model)
            rate = (pruned_weights + group_weights(name)) / total_weights
            steps.append(PruningStep(name, kernel, top1, rate, passes(top1, floor)))
            bar.update()
            if not steps[-1].accepted:
                set_mask(name, kernel, 1.0)
                write_line(MARGIN_EXCEEDED)
                break
            remaining[name] -= 1
            pruned_weights += group_weights(name)
            accuracy = top1
            details["solution"] = details["last"]
        accepted = [s for s in steps if s.accepted]
        while combined_floor is not None and not passes(accuracy, combined_floor) and accepted:
            last = accepted.pop()
            set_mask(last.layer, last.kernel, 1.0)
            pruned_weights -= group_weights(last.layer)
            before, accuracy = accuracy, score(model)
            details["solution"] = details["last"]
            notes.append(f"Back-off: combined {cfg.metric} {before:.5f} < floor {combined_floor:.5f}; "
                         f"restored {last.layer} kernel {last.kernel} -> {accuracy:.5f}")
        if combined_floor is not None and not passes(accuracy, combined_floor):
            notes.append(f"Combined {cfg.metric} {accuracy:.5f} is below the floor {combined_floor:.5f} "
                         f"without any pruning: the quantization alone misses it")
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
    return PruningResult(baseline, floor, steps, pruned, summary, accuracy, pruned_weights / total_weights,
                         cfg.metric, {"baseline": details["baseline"], "solution": details["solution"]}, notes)


def format_report(result, quantized=False):
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


def save_pruning(path, result, config):
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
