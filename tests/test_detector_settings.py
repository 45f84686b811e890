"""bench/detector_settings.py: the peak posterior of each word near its keywords against the background's."""
import importlib.util

import numpy as np

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
