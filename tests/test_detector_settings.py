"""bench/detector_settings.py: the peak posterior of each word near its keywords against the background's."""
import importlib.util

import numpy as np
import pytest

from conftest import ROOT

spec = importlib.util.spec_from_file_location("detector_settings", ROOT / "bench" / "detector_settings.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

NAMES = ("unknown", "one", "two")


def test_peaks_take_the_right_word_near_each_keyword_and_the_background_far_from_all():
    starts = np.arange(0, 20, 0.1)                      # window starts, 100 ms hop
    post = np.zeros((len(starts), 3))
    post[:, 0] = 1.0
    labels = ((5.0, "one"), (10.0, "one"), (15.0, "two"))
    at = {round(s, 1): i for i, s in enumerate(starts)}
    post[at[4.5], 1] = 0.9            # inside the keyword at 5.0's span [4.25, 5.25]
    post[at[5.5], 1] = 0.99           # outside it: not its peak (and within 1 s: not background)
    post[at[9.8], 1] = 0.4            # the keyword at 10.0
    post[at[14.3], 2] = 0.6           # the keyword at 15.0
    post[at[14.8], 1] = 0.95          # the wrong word near "two": no effect on the right word's peak
    post[at[2.0], 2] = 0.7            # background: more than 1 s from every keyword
    peaks = bench.posterior_peaks(post, starts, NAMES, labels)
    assert peaks["one"] == np.median([0.9, 0.4]) and peaks["two"] == 0.6
    far = np.ones(len(starts), bool)
    for onset, _ in labels:
        far &= np.abs(starts - onset) > 1.0
    expected = np.quantile(post[far][:, 1:].max(axis=1), bench.BACKGROUND_QUANTILE)
    assert peaks["background"] == expected and expected > 0.69   # the 0.7 window sets the top quantile


def test_worst_and_mean_are_taken_over_checkpoints_per_setting_and_rate():
    runs = [{"a": {1.0: 0.5, 10.0: 0.2}, "b": {1.0: 1.0, 10.0: 0.0}},
            {"a": {1.0: 0.9, 10.0: 0.1}, "b": {1.0: 0.8, 10.0: 0.4}}]
    table = bench.worst_mean(runs, (1.0, 10.0))
    assert table["a"] == {1.0: pytest.approx((90.0, 70.0)), 10.0: pytest.approx((20.0, 15.0))}
    assert table["b"] == {1.0: pytest.approx((100.0, 90.0)), 10.0: pytest.approx((40.0, 20.0))}
    assert bench.cells_row(table["a"]) == pytest.approx({"miss_at_1_worst": 90.0, "miss_at_10_worst": 20.0,
                                                         "miss_at_1_mean": 70.0, "miss_at_10_mean": 15.0})
