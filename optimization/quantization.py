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
"""
import math
from dataclasses import astuple, dataclass, field, replace
from pathlib import Path

import torch

from configuration import schema
from fixedpoint.fixed_point import integer_length, round_half_away
from fixedpoint.layers import FixedPointConv2d, LayerQuantization, fixed_point_layers
from optimization.plots import plot_quantization
from optimization.profiling import weight_memory_bits
from optimization.range_analysis import collect_ranges
from optimization.scores import decision_value, format_scores
from optimization.solutions import apply_quantization
from utils.atomic import write_yaml
from utils.progress import progress_bar

GROUPS = ("conv_weights", "fc_weights", "activations")
GROUP_NAMES = {"conv_weights": "Conv weights", "fc_weights": "FC weights",
               "activations": "Activations"}
SWEEP_TITLES = {"conv_weights": "Conv layer weights:", "fc_weights": "FC layer weights:",
                "activations": "Conv/FC inputs/activations:"}
MAX_ACCUMULATOR = schema.MAX_ACCUMULATOR
TOLERANCE = 1e-9        # accuracies are ratios of counts; absorb float error at the floor
RULE = "-" * 45
# The section is read by the config schema: one reading for train.py's config and quantize.py -c.
QuantizationConfig = schema.QuantizationConfig
parse_quantization_config = schema.parse_quantization_config


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
    ranges: object                                 # DataFrame from collect_ranges
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
    def final_accuracy(self):
        return self.per_layer.accuracy if self.per_layer else self.accuracy


def _passes(accuracy, floor):
    return accuracy >= floor - TOLERANCE


def _label(bits):
    return f"{bits}" if bits else "float32"


def _bits(bits):
    return f"{bits} bits" if bits else "float32"


def _solution(layers, ranges, weight_bits, activation_bits, bits_accumulator):
    """Per-layer formats: weights at ``weight_bits[name]``, inputs and outputs at
    ``activation_bits``, integer lengths from the ranges, and the accumulator width only where
    the sum is an integer (inputs and weights both fixed point)."""
    solution = {}
    for name in layers:
        w, a = weight_bits[name], activation_bits
        r = ranges.loc[name]
        solution[name] = LayerQuantization(
            bits_inputs=a, bits_weights=w, bits_accumulator=bits_accumulator if a and w else 0,
            bits_outputs=a, il_inputs=integer_length(r["inputs_absmax"]) if a else 0,
            il_weights=integer_length(r["weights_absmax"]) if w else 0,
            il_outputs=integer_length(r["outputs_absmax"]) if a else 0)
    return solution


class _Evaluations:
    """Applies solutions and evaluates them once each (a solution seen before is not re-run),
    counting evaluations on a progress bar. Returns the decision metric; ``details`` keeps every
    metric the evaluation reported."""

    def __init__(self, model, evaluate, total, desc, metric="top1"):
        self.model, self.evaluate, self.metric = model, evaluate, metric
        self.cache, self.details = {}, {}
        self.bar = progress_bar(total=total, desc=desc, unit="eval")

    @staticmethod
    def _key(solution):
        return tuple((name, astuple(q)) for name, q in solution.items())

    def remember(self, solution, accuracy, details=None):
        """Record a score measured earlier so the solution is not evaluated again."""
        self.cache[self._key(solution)] = accuracy
        self.details[self._key(solution)] = details if details is not None else accuracy

    def __call__(self, solution):
        key = self._key(solution)
        if key not in self.cache:
            apply_quantization(self.model, solution)
            scores = self.evaluate(self.model)
            self.details[key] = dict(scores) if isinstance(scores, dict) else float(scores)
            self.cache[key] = decision_value(scores, self.metric)
            self.bar.update()
        return self.cache[key]

    def scores(self, solution):
        return self.details[self._key(solution)]

    def close(self):
        self.bar.total = self.bar.n
        self.bar.close()


def _weight_group(layer):
    return "conv_weights" if isinstance(layer, FixedPointConv2d) else "fc_weights"


def search_quantization(model, evaluate, inputs, config, baseline_override=None):
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

    def solution(bits):
        weights = {name: bits[_weight_group(layer)] for name, layer in layers.items()}
        return _solution(layers, ranges, weights, bits["activations"], accumulator)

    run = _Evaluations(model, evaluate, 2 + len(GROUPS) * len(schedule), "quantization", cfg.metric)
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
                if not _passes(sweeps[group][bw], floor):
                    break
                chosen[group] = bw
            if not chosen[group]:
                notes.append(f"{GROUP_NAMES[group]} stay float32: {schedule[0]} bits gave {cfg.metric} "
                             f"{sweeps[group][schedule[0]]:.5f} < floor {floor:.5f}")
        accuracy = run(solution(chosen))
        while not _passes(accuracy, floor):
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
                         f"{GROUP_NAMES[group]} {_bits(chosen[group])} -> {_bits(raised)}")
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


def search_per_layer_weights(model, evaluate, result):
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

    def lower(b):
        """The next schedule step below ``b`` (float's next is the first step), None at the end."""
        step = schedule.index(b) + 1 if b else 0
        return schedule[step] if step < len(schedule) else None

    def solution(weight_bits):
        return _solution(layers, result.ranges, weight_bits, activations, result.bits_accumulator)

    run = _Evaluations(model, evaluate, len(layers) * (len(schedule) + 1), "per-layer weights", result.metric)
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
                if not _passes(sweeps[name][bw], floor):
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


def _register_bits(low, high):
    """The smallest two's-complement width that holds every integer in [low, high]."""
    bits = 2
    while low < -(1 << (bits - 1)) or high > (1 << (bits - 1)) - 1:
        bits += 1
    return bits


def lab_accumulator_rule(layer, q):
    """The lab's width: data bits + weight bits - 1 + floor(log2(kernel size)), the kernel size
    counting the products of one output plus its bias."""
    kernel = layer.weight[0].numel() + (1 if layer.bias is not None else 0)
    return q.bits_inputs + q.bits_weights - 1 + int(math.floor(math.log2(kernel)))


def _bias_codes(layer, q):
    if layer.bias is None:
        return torch.zeros(layer.out_channels_or_features, dtype=torch.float64)
    return round_half_away(layer.bias.detach().double() * layer.kernel_mask.double() * 2.0 ** q.fl_accumulator)


def worst_case_accumulator(layer, q):
    """Width no input can overflow: for every output, the sum of |weight codes| times the largest
    input code magnitude 2^(bits_inputs-1), plus |bias code|; the widest output decides."""
    with torch.no_grad():
        w = layer.weight.detach().double() * layer.kernel_mask.double().view((-1,) + (1,) * (layer.weight.dim() - 1))
        codes = q.weights.codes(w)
        bound = codes.abs().flatten(1).sum(1) * 2.0 ** (q.bits_inputs - 1) + _bias_codes(layer, q).abs()
    top = int(bound.max())
    return _register_bits(-top, top)


def size_accumulators(model, solution, inputs, batch_size=1024):
    """Each integer accumulator gets the smallest width that no clip of ``inputs`` overflows, but
    at least the lab's rule (capped at MAX_ACCUMULATOR). Returns (solution with those widths,
    layer -> {bits, lab_rule, validation, worst_case, max_abs}); the model carries the solution.
    The accumulators are measured with the same formats in registers too wide to wrap, so the
    outputs on ``inputs`` are unchanged by the sizing."""
    layers = fixed_point_layers(model)
    wide = {name: replace(q, bits_accumulator=MAX_ACCUMULATOR) if q.integer_accumulator else q
            for name, q in solution.items()}
    apply_quantization(model, wide)
    extremes = {name: [0.0, 0.0] for name, q in wide.items() if q.integer_accumulator}

    def probe(name):
        def record(acc):
            extremes[name][0] = min(extremes[name][0], float(acc.min()))
            extremes[name][1] = max(extremes[name][1], float(acc.max()))
        return record

    training = model.training
    model.eval()
    try:
        for name in extremes:
            layers[name].accumulator_probe = probe(name)
        with torch.no_grad():
            for i in range(0, len(inputs), batch_size):
                model(inputs[i:i + batch_size])
    finally:
        for layer in layers.values():
            layer.accumulator_probe = None
        model.train(training)
    sized, info = dict(solution), {}
    for name, (low, high) in extremes.items():
        layer, q = layers[name], wide[name]
        bias = _bias_codes(layer, q)
        low, high = min(low, float(bias.min())), max(high, float(bias.max()))
        measured = _register_bits(int(low), int(high))
        rule = lab_accumulator_rule(layer, q)
        bits = min(max(rule, measured), MAX_ACCUMULATOR)
        sized[name] = replace(q, bits_accumulator=bits)
        info[name] = {"bits": bits, "lab_rule": rule, "validation": measured,
                      "worst_case": worst_case_accumulator(layer, q), "max_abs": int(max(-low, high))}
    apply_quantization(model, sized)
    return sized, info


def format_report(result):
    """The lab's quantization report; notes and per-layer results follow the Accuracy line."""
    details, metric = result.details, result.metric
    base = details.get("baseline", result.baseline)
    lines = [RULE, "Network quantization results.", f"Baseline float32: {format_scores(base, metric, False)}"]
    for group in GROUPS:
        lines.append(SWEEP_TITLES[group])
        lines += [f"    bitwidth: {bw:>2} => {format_scores(details.get(group, {}).get(bw, acc), metric)}"
                  for bw, acc in result.sweeps[group].items()]
    lines.append("Dynamic fixed point net:")
    lines += [f"{GROUP_NAMES[g]} bitwidth: {_label(result.bitwidths[g])}" for g in GROUPS]
    lines.append(f"Accuracy: {format_scores(details.get('combined', result.accuracy), metric, False)}")
    lines.append(f"Decision metric: {metric}, floor {result.floor:.5f} (baseline {result.baseline:.5f})")
    lines += result.notes
    p = result.per_layer
    if p:
        lines.append("Per-layer weights (most tolerant first):" if p.order else
                     "Per-layer weights: every layer is already at the lowest bitwidth")
        lines += [f"    {name}: {_bits(p.group_bitwidths[name])} -> {_bits(p.bitwidths[name])}"
                  for name in p.order]
        saved = p.group_weight_bits - p.weight_bits
        lines.append(f"Per-layer accuracy: {p.accuracy:.5f}")
        lines.append(f"Weight memory: {p.group_weight_bits} -> {p.weight_bits} bits "
                     f"(saved {saved} bits, {100 * saved / p.group_weight_bits:.2f}%)")
    if result.accumulators:
        lines.append("Accumulator bits (chosen: lab rule / no validation overflow / worst case):")
        lines += [f"    {name}: {a['bits']} ({a['lab_rule']} / {a['validation']} / {a['worst_case']})"
                  for name, a in result.accumulators.items()]
    lines.append(RULE)
    return "\n".join(lines)


def save_quantization(path, result, config):
    """Write quantization.yml atomically (keys ``config``, ``results``, ``layers``) and the
    accuracy-vs-bitwidth figure next to it (same name, ``.png``); returns the figure's path."""
    path = Path(path)
    results = {"baseline": result.baseline, "floor": result.floor,
               "schedule": list(result.schedule),
               "sweeps": {g: dict(result.sweeps[g]) for g in GROUPS},
               "bitwidths": dict(result.bitwidths), "accuracy": result.accuracy,
               "metric": result.metric, "notes": list(result.notes)}
    if result.details:
        results["scores"] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in result.details.items()}
    if result.accumulators:
        results["accumulators"] = {name: dict(a) for name, a in result.accumulators.items()}
    p = result.per_layer
    if p:
        results["per_layer"] = {"order": list(p.order), "tolerance": dict(p.tolerance),
                                "sweeps": {n: dict(s) for n, s in p.sweeps.items()},
                                "bitwidths": dict(p.bitwidths), "accuracy": p.accuracy,
                                "group_weight_bits": p.group_weight_bits,
                                "weight_bits": p.weight_bits}
    layers = {name: q.to_dict() for name, q in result.layers.items()}
    # ``solutions`` repeats the formats under the lab's name, where its loader reads them
    # (seven keys per layer), so the lab's test.py, profile.py and train.py accept our file too.
    write_yaml(path, {"config": parse_quantization_config(config).to_dict(), "results": results,
                      "layers": layers, "solutions": {name: dict(q) for name, q in layers.items()}})
    figure = path.with_suffix(".png")
    plot_quantization({GROUP_NAMES[g]: result.sweeps[g] for g in GROUPS}, result.baseline,
                      result.floor, figure)
    return figure
