"""test.py's report: the lab's crosstab, formatted without pandas, must print as pandas does."""
import pandas as pd
import torch

from app.testing import class_scores, confusion_table, format_confusion
from model.metric import confusion_matrix


def _pandas_crosstab(targets, predictions, n):
    cats = pd.CategoricalDtype(list(range(n)))
    true = pd.Series(targets.numpy(), name="True").astype(cats)
    pred = pd.Series(predictions.numpy(), name="Predicted").astype(cats)
    return pd.crosstab(true, pred, margins=True, dropna=False)


def test_the_confusion_table_prints_as_the_labs_pandas_crosstab():
    g = torch.Generator().manual_seed(0)
    cases = [(torch.tensor([0, 1]), torch.tensor([0, 0]), 4)]  # classes absent and never predicted
    for n, size in ((4, 3672), (4, 40000), (3, 7), (12, 500)):
        cases.append((torch.randint(0, n, (size,), generator=g), torch.randint(0, n, (size,), generator=g), n))
    for targets, predictions, n in cases:
        cm = confusion_matrix(torch.nn.functional.one_hot(predictions, n).float(), targets, n)
        expected = _pandas_crosstab(targets, predictions, n)
        assert format_confusion(confusion_table(cm)) == str(expected)
        assert confusion_table(cm) == expected.values.tolist()


def test_class_scores_leave_absent_classes_out_of_the_macro_averages():
    cm = torch.tensor([[8, 2, 0], [1, 3, 0], [0, 0, 0]])
    table, macro_recall, macro_precision = class_scores(cm)
    assert [support for support, _, _ in table] == [10, 4, 0]
    assert macro_recall == (0.8 + 0.75) / 2
    assert macro_precision == (8 / 9 + 3 / 5) / 2  # class 2 is absent: its precision 0 is left out
