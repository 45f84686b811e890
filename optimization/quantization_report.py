"""The quantization search's report (the lab's lines, then ours) and quantization.yml.

The lab's report lines keep their words and first number (top-1) so its students' scripts still
read them; the decision metric, back-off notes, per-layer and accumulator results follow.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from configuration.schema import parse_quantization_config
from optimization.plots import plot_quantization
from optimization.quantization import GROUP_NAMES, GROUPS, SWEEP_TITLES, bits_label
from optimization.scores import RULE, format_scores
from utils.atomic import write_together, yaml_bytes

if TYPE_CHECKING:
    from optimization.quantization import QuantizationResult


def _label(bits):
    return f"{bits}" if bits else "float32"


def format_report(result: QuantizationResult) -> str:
    """The lab's quantization report; the notes (back-off steps, groups kept in float) come
    before the chosen bitwidths they changed, per-layer results after the Accuracy line."""
    details, metric = result.details, result.metric
    base = details.get("baseline", result.baseline)
    lines = [RULE, "Network quantization results.", f"Baseline float32: {format_scores(base, metric, False)}"]
    for group in GROUPS:
        lines.append(SWEEP_TITLES[group])
        lines += [f"    bitwidth: {bw:>2} => {format_scores(details.get(group, {}).get(bw, acc), metric)}"
                  for bw, acc in result.sweeps[group].items()]
    lines += result.notes
    lines.append("Dynamic fixed point net:")
    lines += [f"{GROUP_NAMES[g]} bitwidth: {_label(result.bitwidths[g])}" for g in GROUPS]
    lines.append(f"Accuracy: {format_scores(details.get('combined', result.accuracy), metric, False)}")
    lines.append(f"Decision metric: {metric}, floor {result.floor:.5f} (baseline {result.baseline:.5f})")
    p = result.per_layer
    if p:
        lines.append("Per-layer weights (most tolerant first):" if p.order else
                     "Per-layer weights: every layer is already at the lowest bitwidth")
        lines += [f"    {name}: {bits_label(p.group_bitwidths[name])} -> {bits_label(p.bitwidths[name])}"
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


def save_quantization(path: str | os.PathLike, result: QuantizationResult, config: dict | None) -> Path:

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
    figure = path.with_suffix(".png")
    write_together({   # the YAML and its figure are replaced together or not at all
        path: yaml_bytes({"config": parse_quantization_config(config).to_dict(), "results": results,
                          "layers": layers, "solutions": {name: dict(q) for name, q in layers.items()}}),
        figure: plot_quantization({GROUP_NAMES[g]: result.sweeps[g] for g in GROUPS}, result.baseline,
                                  result.floor, metric=result.metric)})
    return figure
