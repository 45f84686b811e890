"""Every compression step says what it does to the false alarms (issue 24): the validation
false-alarm rate before -> after the solution it accepts, and one warning line when a step more
than doubles it. With a silence class the false alarms are silence-aware: unknown <-> silence is
no false alarm, a silence clip taken for a keyword is one. (The scripts' lines, measured by hand
from the predictions, are checked in test_twelve_class_chain.py.)"""
import pytest
import torch

from model.metric import all_metrics, false_alarm_counts, false_alarm_rate, silence_class
from optimization.scores import false_alarm_change


def test_false_alarms_without_a_silence_class_are_class_0_clips_classified_as_anything_else():
    cm = torch.tensor([[6, 1, 2, 1], [0, 5, 0, 0], [1, 0, 4, 0], [0, 0, 0, 3]])
    assert false_alarm_counts(cm) == (4, 10)
    assert false_alarm_rate(cm) == 0.4 == all_metrics(cm)["false_alarm_rate"]


def test_false_alarms_with_a_silence_class_count_keywords_fired_by_unknown_or_silence_clips():
    names = ("unknown", "yes", "no", "silence")
    assert silence_class(names) == 3 and silence_class(("unknown", "one")) is None
    cm = torch.tensor([[6, 1, 2, 3],    # unknown: 3 taken for a keyword, 3 for silence (no alarm)
                       [0, 5, 0, 0],
                       [1, 0, 4, 0],
                       [2, 1, 0, 7]])   # silence: 1 taken for "yes" (an alarm), 2 for unknown (none)
    assert false_alarm_counts(cm, 3) == (4, 22)
    assert false_alarm_rate(cm, 3) == 4 / 22 == all_metrics(cm, 3)["false_alarm_rate"]
    assert false_alarm_counts(cm) == (6, 12)  # read as the lab's task, silence is a keyword
    assert false_alarm_rate(torch.zeros(4, 4, dtype=torch.int64), 3) == 0.0


@pytest.mark.parametrize("before, after, warning", [
    (0.05, 0.10, None),     # doubled exactly: no warning
    (0.05, 0.1001, "warning: pruning more than doubled the false alarms (5.00% -> 10.01% on validation); prune less"),
    (0.10, 0.02, None),
    (0.0, 0.0, None),
    (0.0, 0.01, "warning: pruning brought false alarms where there were none (0.00% -> 1.00% on validation); "
                "prune less"),
])
def test_a_step_that_more_than_doubles_false_alarms_warns_in_one_line(before, after, warning):
    lines = false_alarm_change({"false_alarm_rate": before, "false_alarms": 1, "non_keyword_clips": 200},
                               {"false_alarm_rate": after, "false_alarms": 2, "non_keyword_clips": 200},
                               "pruning", "prune less")
    assert lines[0] == (f"False alarms on validation, pruning: {100 * before:.2f}% -> {100 * after:.2f}% of "
                        f"non-keyword clips (1 -> 2 of 200 classified as a keyword)")
    assert lines[1:] == ([warning] if warning else [])


def test_the_false_alarm_line_without_counts_or_scores():
    assert false_alarm_change({"false_alarm_rate": 0.014}, {"false_alarm_rate": 0.059}, "finetuning", "x") == [
        "False alarms on validation, finetuning: 1.40% -> 5.90% of non-keyword clips",
        "warning: finetuning more than doubled the false alarms (1.40% -> 5.90% on validation); x"]
    assert false_alarm_change(0.9, {"false_alarm_rate": 0.1}, "x") == []  # a bare score: nothing to say
    assert false_alarm_change({"top1": 0.9}, {"false_alarm_rate": 0.1}, "x") == []
