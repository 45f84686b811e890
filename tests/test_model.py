import torch

from model.metric import (all_metrics, balanced_accuracy, confusion_matrix, false_alarm_rate,
                          min_keyword_recall, ties, top1)
from model.model import KeywordLeNet5Clone
from trainer.evaluation import evaluate


def test_parameter_count_and_output():
    m = KeywordLeNet5Clone()
    assert sum(p.numel() for p in m.parameters()) == 12764
    assert [tuple(p.shape) for p in m.parameters()] == [(8, 1, 3, 3), (8,), (8, 8, 3, 3), (8,), (64, 184), (64,),
                                                        (4, 64), (4,)]
    out = m.eval()(torch.randn(5, 1, 100, 13))
    assert out.shape == (5, 4)
    torch.testing.assert_close(out.exp().sum(1), torch.ones(5))


def test_macs_per_clip_by_hooks():
    """170,864 MACs: conv1 98*11*8*9 + conv2 47*3*8*72 + fc3 184*64 + fc4 64*4."""
    m = KeywordLeNet5Clone().eval()
    macs = []

    def hook(mod, inp, out):
        w = mod.weight
        positions = out[0, 0].numel() if out.dim() == 4 else 1
        macs.append(positions * w.numel())
    for mod in (m.conv1, m.conv2, m.fc3, m.fc4):
        mod.register_forward_hook(hook)
    m(torch.zeros(1, 1, 100, 13))
    assert macs == [77616, 81216, 11776, 256] and sum(macs) == 170864


def test_metrics_come_from_one_confusion_matrix_with_ties_to_the_lowest_class():
    out = torch.tensor([[0.0, 0.0, -1.0, -1.0], [-2.0, -0.1, -3.0, -3.0], [-0.1, -2.0, -3.0, -3.0],
                        [0.0, 0.0, 0.0, 0.0], [-3.0, -3.0, -0.1, -3.0], [-3.0, -3.0, -3.0, -0.1]])
    target = torch.tensor([1, 1, 0, 3, 2, 0])
    cm = confusion_matrix(out, target)
    # ties (rows 0 and 3) go to the lowest tied class, as torch.argmax and the C model's kws_infer
    assert cm.tolist() == [[1, 0, 0, 1], [1, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0]]
    assert ties(out) == 2
    assert top1(cm) == 3 / 6
    assert balanced_accuracy(cm) == (1 / 2 + 1 / 2 + 1 + 0) / 4
    assert false_alarm_rate(cm) == 1 / 2            # one of two class-0 clips fired as "three"
    assert min_keyword_recall(cm) == 0.0
    assert all_metrics(cm)["top1"] == top1(cm)


def test_balanced_accuracy_ignores_absent_classes_and_cannot_be_gamed_by_the_majority():
    always_background = torch.tensor([[80, 0, 0, 0], [7, 0, 0, 0], [7, 0, 0, 0], [6, 0, 0, 0]])
    assert top1(always_background) == 0.8
    assert balanced_accuracy(always_background) == 0.25
    assert false_alarm_rate(always_background) == 0.0
    no_threes = torch.tensor([[9, 1, 0, 0], [0, 5, 0, 0], [0, 1, 4, 0], [0, 0, 0, 0]])
    assert balanced_accuracy(no_threes) == (0.9 + 1.0 + 0.8) / 3


def test_evaluate_averages_per_sample_not_per_batch():
    torch.manual_seed(0)
    m = KeywordLeNet5Clone().eval()
    x = torch.randn(7, 1, 100, 13)
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2])
    batches = [(x[:4], y[:4]), (x[4:], y[4:])]   # uneven batches: 4 and 3
    res = evaluate(m, batches, torch.nn.functional.nll_loss)
    with torch.no_grad():
        out = m(x)
    torch.testing.assert_close(torch.tensor(res["loss"]), torch.nn.functional.nll_loss(out, y), rtol=1e-5, atol=1e-6)
    assert res["top1"] == float((out.argmax(1) == y).sum()) / 7
    assert res["confusion"].sum() == 7 and res["top1"] == top1(res["confusion"])


def test_weighted_loss_does_not_depend_on_batching():
    import functools
    torch.manual_seed(0)
    m = KeywordLeNet5Clone().eval()
    x = torch.randn(9, 1, 100, 13)
    y = torch.tensor([0, 0, 0, 0, 0, 1, 2, 3, 0])
    crit = functools.partial(torch.nn.functional.nll_loss, weight=torch.tensor([1.0, 2.0, 2.0, 2.0]))
    one = evaluate(m, [(x, y)], crit)
    split = evaluate(m, [(x[:2], y[:2]), (x[2:], y[2:])], crit)
    assert abs(one["loss"] - split["loss"]) < 1e-6 and one["loss_weight"] == split["loss_weight"] == 12.0
