"""Evaluations of quantization solutions, each solution measured once.

The searches revisit solutions (a group's sweep ends where the combined check starts; the
per-layer refinement starts from the per-group solution), and one evaluation is a pass over the
whole validation split, so scores are cached by the solution's formats.
"""
from dataclasses import astuple

from optimization.scores import decision_value
from optimization.solutions import apply_quantization
from utils.progress import progress_bar


class CachedEvaluations:
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
