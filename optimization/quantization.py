"""Ristretto-style search for dynamic fixed-point formats (Gysel et al. 2016).

Three groups are searched one at a time, each with everything else in float: the weights of all
conv layers, the weights of all FC layers, and the activations (inputs and outputs of every
layer). Each group walks down the bitwidth schedule until validation top-1 falls below the floor
and keeps the lowest bitwidth that stayed at or above it. Integer lengths come from range
analysis. The combined solution is then checked against the floor and backed off if needed.

``error_margin`` is in percentage points of the decision ``metric`` (the lab's ``top1`` when the
config names none; our config chooses ``balanced_accuracy``): the floor is ``baseline - error_margin / 100`` (a float baseline
of 0.90 and a margin of 3 give a floor of 0.87). On a split that is mostly background, a top-1
margin lets the search take a model most of the way to "always background"; a margin on the mean
per-class recall cannot be spent on the keywords alone. ``evaluate`` may return the decision
metric alone or a dict of metrics; with a dict, top-1 is reported beside the decision metric.

With ``bits_accumulator: auto`` the search runs with registers too wide to wrap; the final
solution then gets per-layer accumulator widths (``size_accumulators``): at least the lab's rule,
and wide enough that no validation clip overflows, so the measured accuracies still hold.

The widths are sized in ``optimization.accumulators``; the report and quantization.yml are
written by ``optimization.quantization_report``.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from configuration.schema import MAX_ACCUMULATOR, parse_quantization_config
from fixedpoint.layers import FixedPointConv2d, LayerQuantization, fixed_point_layers
from optimization.accumulators import size_accumulators
from optimization.evaluations import CachedEvaluations
from optimization.profiling import weight_memory_bits
from optimization.range_analysis import collect_ranges, range_formats
from optimization.scores import passes
from optimization.solutions import apply_quantization

if TYPE_CHECKING:
    import torch

    from model.registry import KeywordModel
    from optimization.scores import Scores

GROUPS = ("conv_weights", "fc_weights", "activations")
GROUP_NAMES = {"conv_weights": "Conv weights", "fc_weights": "FC weights",
               "activations": "Activations"}
SWEEP_TITLES = {"conv_weights": "Conv layer weights:", "fc_weights": "FC layer weights:",
                "activations": "Conv/FC inputs/activations:"}


@dataclass
class PerLayerResult:
    """Outcome of the per-layer weight refinement that starts from the per-group solution."""
    order: list              # layers in the order they were lowered, most tolerant first
    tolerance: dict          # layer -> top-1 with only that layer one step lower
    sweeps: dict             # layer -> {bitwidth: top1} tried while lowering it
    group_bitwidths: dict    # layer -> weight bitwidth in the per-group solution (0 = float)
    bitwidths: dict          # layer -> final weight bitwidth (0 = float)
    accuracy: float          # top-1 of the per-layer solution
    group_weight_bits: int   # weight memory of the per-group solution, in bits
    weight_bits: int         # weight memory of the per-layer solution, in bits


@dataclass
class QuantizationResult:
    """Everything the search measured and decided; ``layers`` is the solution to save/apply."""
    baseline: float
    floor: float
    schedule: list
    bits_accumulator: int
    ranges: dict                                   # from collect_ranges
    sweeps: dict                                   # group -> {bitwidth: top1}
    bitwidths: dict                                # group -> chosen bitwidth after back-off
    accuracy: float                                # top-1 of the per-group solution
    layers: dict                                   # layer -> LayerQuantization
    notes: list = field(default_factory=list)      # floats kept and back-off steps
    per_layer: PerLayerResult = None
    metric: str = "top1"                           # the decision metric of sweeps/accuracy/floor
    details: dict = field(default_factory=dict)    # group -> {bitwidth: {metric: value}}; "combined"
    accumulators: dict = field(default_factory=dict)  # layer -> widths, when sized per layer ('auto')
    inputs: object = None                          # validation inputs (to size accumulators again)

    @property
    def final_accuracy(self) -> float:
        return self.per_layer.accuracy if self.per_layer else self.accuracy


def bits_label(bits: int) -> str:
    return f"{bits} bits" if bits else "float32"


def _solution(layers, ranges, weight_bits, activation_bits, bits_accumulator):
    """Per-layer formats: weights at ``weight_bits[name]``, inputs and outputs at
    ``activation_bits``, integer lengths from the ranges, and the accumulator width only where
    the sum is an integer (inputs and weights both fixed point)."""
    solution = {}
    for name in layers:
        w, a = weight_bits[name], activation_bits
        formats = range_formats(ranges, name, w, a)
        solution[name] = LayerQuantization.from_formats(*formats, bits_accumulator if a and w else 0)
    return solution


def _weight_group(layer):
    return "conv_weights" if isinstance(layer, FixedPointConv2d) else "fc_weights"


def search_quantization(model: KeywordModel, evaluate: Callable[[KeywordModel], Scores], inputs: torch.Tensor,
                        config: dict | None, baseline_override: float | None = None) -> QuantizationResult:
    """Run range analysis on ``inputs`` and the three group searches, check the combined solution
    against the floor (backing off if needed) and return a QuantizationResult. ``evaluate(model)``
    returns the validation decision metric or a dict of metrics. ``baseline_override``: the
    baseline the margin counts from when it is not the model's own float score (the unpruned
    float model's, when the model searched is pruned). On return the model carries the final
    solution; on an exception its original formats are restored."""
    cfg = parse_quantization_config(config)
    layers = fixed_point_layers(model)
    original = {name: layer.quantization for name, layer in layers.items()}
    schedule = cfg.bitwidths
    auto = cfg.bits_accumulator == "auto"
    # 'auto' searches with registers too wide to wrap, then sizes each layer's register so that no
    # validation clip overflows it: the measured accuracies stay exact.
    accumulator = MAX_ACCUMULATOR if auto else cfg.bits_accumulator
    ranges = collect_ranges(model, inputs)

    def solution(bits: Mapping[str, int]) -> dict[str, LayerQuantization]:
        weights = {name: bits[_weight_group(layer)] for name, layer in layers.items()}
        return _solution(layers, ranges, weights, bits["activations"], accumulator)

    run = CachedEvaluations(model, evaluate, 2 + len(GROUPS) * len(schedule), "quantization", cfg.metric)
    try:
        float_bits = dict.fromkeys(GROUPS, 0)
        baseline = run(solution(float_bits))
        if baseline_override is not None:
            baseline = float(baseline_override)
        floor = baseline - cfg.error_margin / 100
        sweeps, chosen, notes, details = {}, {}, [], {"baseline": run.scores(solution(float_bits))}
        for group in GROUPS:
            sweeps[group], chosen[group], details[group] = {}, 0, {}
            for bw in schedule:
                sweeps[group][bw] = run(solution({**float_bits, group: bw}))
                details[group][bw] = run.scores(solution({**float_bits, group: bw}))
                if not passes(sweeps[group][bw], floor):
                    break
                chosen[group] = bw
            if not chosen[group]:
                notes.append(f"{GROUP_NAMES[group]} stay float32: {schedule[0]} bits gave {cfg.metric} "
                             f"{sweeps[group][schedule[0]]:.5f} < floor {floor:.5f}")
        accuracy = run(solution(chosen))
        while not passes(accuracy, floor):
            # Ties go to the earlier stage (min keeps the first). When every group is float again
            # the model is the float one; it can miss only a baseline given from outside (a
            # pruned model measured against the unpruned float model), and nothing is left to raise.
            if not any(chosen.values()):
                notes.append(f"The float model itself scores {accuracy:.5f} < floor {floor:.5f}; "
                             f"every group stays float32 (prune less to quantize it)")
                break
            group = min((g for g in GROUPS if chosen[g]), key=lambda g: sweeps[g][chosen[g]])
            step = schedule.index(chosen[group])
            raised = schedule[step - 1] if step else 0
            notes.append(f"Back-off: combined {cfg.metric} {accuracy:.5f} < floor {floor:.5f}; "
                         f"{GROUP_NAMES[group]} {bits_label(chosen[group])} -> {bits_label(raised)}")
            chosen[group] = raised
            accuracy = run(solution(chosen))
        final = solution(chosen)
        details["combined"] = run.scores(final)
        apply_quantization(model, final)
        sizes = {}
        if auto:
            final, sizes = size_accumulators(model, final, inputs)
    except BaseException:
        apply_quantization(model, original)
        raise
    finally:
        run.close()
    return QuantizationResult(baseline, floor, schedule, accumulator, ranges, sweeps,
                              chosen, accuracy, final, notes, metric=cfg.metric, details=details,
                              accumulators=sizes, inputs=inputs)


def _weight_memory(layers, weight_bits):
    return sum(weight_memory_bits(layer.weight.numel() + (layer.bias.numel() if layer.bias is not None else 0),
                                  weight_bits[name]) for name, layer in layers.items())


def search_per_layer_weights(model: KeywordModel, evaluate: Callable[[KeywordModel], Scores],
                             result: QuantizationResult) -> QuantizationResult:
    """Lower each layer's weight bitwidth on its own, starting from the per-group ``result``:
    layers are taken most tolerant first (top-1 with only that layer one schedule step lower) and
    each is lowered step by step while the combined top-1 stays at or above the floor. Returns a
    copy of ``result`` with the per-layer solution in ``layers`` and the details in ``per_layer``;
    the model carries that solution (its original formats are restored on an exception)."""
    layers = fixed_point_layers(model)
    original = {name: layer.quantization for name, layer in layers.items()}
    schedule, floor = result.schedule, result.floor
    activations = result.bitwidths["activations"]
    group_bits = {name: result.layers[name].bits_weights for name in layers}
    bits = dict(group_bits)

    def lower(b: int) -> int | None:
        """The next schedule step below ``b`` (float's next is the first step), None at the end."""
        step = schedule.index(b) + 1 if b else 0
        return schedule[step] if step < len(schedule) else None

    def solution(weight_bits: Mapping[str, int]) -> dict[str, LayerQuantization]:

        return _solution(layers, result.ranges, weight_bits, activations, result.bits_accumulator)

    run = CachedEvaluations(model, evaluate, len(layers) * (len(schedule) + 1), "per-layer weights", result.metric)
    run.remember(solution(bits), result.accuracy, result.details.get("combined"))
    try:
        lowerable = [name for name in layers if lower(bits[name]) is not None]
        tolerance = {name: run(solution({**bits, name: lower(bits[name])})) for name in lowerable}
        order = sorted(lowerable, key=lambda name: -tolerance[name])
        accuracy, sweeps = result.accuracy, {}
        for name in order:
            sweeps[name] = {}
            while (bw := lower(bits[name])) is not None:
                sweeps[name][bw] = run(solution({**bits, name: bw}))
                if not passes(sweeps[name][bw], floor):
                    break
                bits[name], accuracy = bw, sweeps[name][bw]
        final = solution(bits)
        apply_quantization(model, final)
        sizes = {}
        if result.accumulators:
            final, sizes = size_accumulators(model, final, result.inputs)
    except BaseException:
        apply_quantization(model, original)
        raise
    finally:
        run.close()
    per_layer = PerLayerResult(order, tolerance, sweeps, group_bits, bits, accuracy,
                               _weight_memory(layers, group_bits), _weight_memory(layers, bits))
    return replace(result, layers=final, per_layer=per_layer, accumulators=sizes or result.accumulators)
