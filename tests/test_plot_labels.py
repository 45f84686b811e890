"""The search figures name the metric they plot (the decision metric, not always top-1)."""
import pytest

import optimization.plots as plots


@pytest.fixture
def drawn(monkeypatch):
    figures = []
    monkeypatch.setattr(plots, "figure_png", lambda fig: figures.append(fig) or b"png")
    return figures


@pytest.mark.parametrize("metric, label", [("balanced_accuracy", "validation balanced accuracy"),
                                           ("top1", "validation top-1")])
def test_search_figures_label_their_y_axis_with_the_decision_metric(drawn, metric, label, tmp_path):
    plots.plot_quantization({"Conv weights": {16: 0.82, 8: 0.80}}, 0.8221, 0.7721, tmp_path / "q.png", metric=metric)
    plots.plot_pruning([0.1, 0.2], [0.81, 0.70], [True, False], 0.8221, 0.7721, tmp_path / "p.png", metric=metric)
    assert [fig.axes[0].get_ylabel() for fig in drawn] == [label, label]
