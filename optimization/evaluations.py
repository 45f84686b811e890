"""Evaluations of quantization solutions, each solution measured once.

The searches revisit solutions (a group's sweep ends where the combined check starts; the
per-layer refinement starts from the per-group solution), and one evaluation is a pass over the
whole validation split, so scores are cached by the solution's formats.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import astuple
from typing import TYPE_CHECKING

import torch

from fixedpoint.graph import describe
from optimization.scores import decision_value
from optimization.solutions import apply_quantization
from utils.progress import progress_bar

if TYPE_CHECKING:
    from fixedpoint.fixed_point import Format
    from fixedpoint.layers import LayerQuantization
    from model.registry import KeywordModel
    from optimization.scores import Scores


class CachedEvaluations:
    """Applies solutions and evaluates them once each (a solution seen before is not re-run),
    counting evaluations on a progress bar. Returns the decision metric; ``details`` keeps every
    metric the evaluation reported."""

    def __init__(self, model: KeywordModel, evaluate: Callable[[KeywordModel], Scores], total: int, desc: str,
                 metric: str = "top1") -> None:

        self.model, self.evaluate, self.metric = model, evaluate, metric
        self.cache, self.details = {}, {}
        self.bar = progress_bar(total=total, desc=desc, unit="eval")

    @staticmethod
    def _key(solution):
        return tuple((name, astuple(q)) for name, q in solution.items())

    def remember(self, solution: Mapping[str, LayerQuantization], accuracy: float,
                 details: Scores | None = None) -> None:
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

    def scores(self, solution: Mapping[str, LayerQuantization]) -> Scores:
        return self.details[self._key(solution)]

    def close(self) -> None:
        self.bar.total = self.bar.n
        self.bar.close()


class PrefixReuse:
    """Evaluations of one model on the same batches, again and again, with other formats or
    pruned kernels: the blocks before the first one whose state changed compute what they
    computed last time, so their outputs (the inputs of later blocks, kept per batch) are reused
    and only the rest of the model runs. A search that changes the FC weights' format reruns two
    linear layers, not the convolutions.

    ``bind(model)`` before each evaluation; then the evaluation calls it like the model, batch
    after batch in the same order (the validation loader does not shuffle). A block's state is
    its layer's formats, kernel mask and weight and bias versions (any in-place change counts).
    Kept inputs are capped at ``budget_bytes``."""

    def __init__(self, budget_bytes=256 * 2 ** 20) -> None:
        self.model, self.states, self.kept, self.budget = None, None, {}, budget_bytes
        self.start, self.batch, self.used = 0, 0, 0

    @staticmethod
    def _state(block):
        layer = block.layer
        bias = layer.bias._version if layer.bias is not None else None
        return (layer.quantization, layer.kernel_mask.clone(), layer.weight._version, bias)

    @staticmethod
    def _same(a, b):
        return a[0] == b[0] and torch.equal(a[1], b[1]) and a[2:] == b[2:]

    def bind(self, model: KeywordModel) -> PrefixReuse:
        states = [self._state(block) for block in describe(model).blocks]
        if model is not self.model or self.states is None:
            self.model, self.kept, self.used, same = model, {}, 0, 0
        else:
            same = 0
            while same < len(states) and self._same(states[same], self.states[same]):
                same += 1
        self.states, self.start, self.batch = states, same, 0
        return self

    def eval(self) -> PrefixReuse:
        self.model.eval()
        return self

    def __call__(self, x):
        kept = self.kept.setdefault(self.batch, {})
        self.batch += 1
        start = self.start if self.start in kept and len(kept[self.start][0]) == len(x) else 0
        if start:
            x, codes_of = kept[start]
        else:
            codes_of = None

        def capture(i: int, value: torch.Tensor, codes: Format | None) -> None:

            if i > start:
                old = kept.pop(i, None)
                self.used -= old[0].numel() * old[0].element_size() if old is not None else 0
                size = value.numel() * value.element_size()
                if self.used + size <= self.budget:
                    kept[i] = (value, codes)
                    self.used += size
        return self.model(x, start=start, codes_of=codes_of, capture=capture)
