"""Decisions that look at the keywords: balanced accuracy in the searches, the combined check,
distillation, weight averaging, SpecAugment, and finetuning runs that record what they did."""
import math

import pytest
import torch
import torch.nn.functional as F
import yaml

from conftest import run_dirs, train_toy_model
from conftest import run_script as run
from configuration import schema
from data_loader.augmentation import AugmentParams, MelAugmenter
from model.model import KeywordLeNet5Clone
from fixedpoint.layers import fixed_point_layers
from optimization.pruning import format_report, search_pruning
from optimization.quantization import search_quantization
from trainer.distillation import Distillation, Ensemble
from utils.errors import UserError


# --- units ------------------------------------------------------------------------------------

def test_distillation_mixes_hard_labels_and_softened_teacher_targets():
    torch.manual_seed(0)
    teacher, student = KeywordLeNet5Clone(dropout=0.0), KeywordLeNet5Clone(dropout=0.0)
    x, y = torch.randn(6, 1, 100, 13), torch.tensor([0, 1, 2, 3, 0, 0])
    out = student(x)
    hard = F.nll_loss(out, y)
    t, alpha = 3.0, 0.25
    with torch.no_grad():
        p_teacher = F.softmax(teacher.eval()(x) / t, dim=1)
    p_student = F.log_softmax(out / t, dim=1)
    kl = (p_teacher * (p_teacher.log() - p_student)).sum(dim=1).mean()
    loss = Distillation(teacher, t, alpha)(out, y, x, hard)
    torch.testing.assert_close(loss, (1 - alpha) * hard + alpha * t * t * kl)
    assert Distillation(teacher, t, 0.0)(out, y, x, hard) == hard
    # a student that equals its teacher gets no soft-target loss at all
    with torch.no_grad():
        same = Distillation(student, t, 1.0)(student.eval()(x), y, x, hard)
    assert abs(float(same)) < 1e-6


def test_distillation_weighs_each_clip_by_its_class_weight():
    torch.manual_seed(1)
    teacher, student = KeywordLeNet5Clone(dropout=0.0), KeywordLeNet5Clone(dropout=0.0)
    x, y = torch.randn(4, 1, 100, 13), torch.tensor([0, 1, 0, 0])
    out = student.eval()(x)
    w = torch.tensor([1.0, 5.0, 1.0, 1.0])
    loss = Distillation(teacher, 2.0, 1.0, w)(out, y, x, torch.tensor(0.0))
    with torch.no_grad():
        kl = F.kl_div(F.log_softmax(out / 2, 1), F.log_softmax(teacher(x) / 2, 1), reduction="none",
                      log_target=True).sum(1)
    per_clip = w[y]
    torch.testing.assert_close(loss, 4.0 * (kl * per_clip).sum() / per_clip.sum())


def test_spec_augment_masks_spans_with_the_clip_mean_level_and_is_deterministic():
    params = AugmentParams(time_shift_ms=0, noise_prob=0, spec_time_masks=2, spec_time_width=10,
                           spec_freq_masks=1, spec_freq_width=5)
    aug = MelAugmenter(params, None, hop_ms=10)
    mel = torch.rand(8, 40, 100) + 0.5
    a = aug(mel, torch.Generator().manual_seed(3))
    b = aug(mel, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    changed = a != mel
    fill = mel.log().mean(dim=(1, 2)).exp()
    for i in range(len(mel)):
        assert torch.allclose(a[i][changed[i]], fill[i].expand(int(changed[i].sum())))
        frames = changed[i].all(dim=0).sum()      # whole frames masked by time masks
        assert frames <= 20
    assert changed.any()
    with pytest.raises(UserError, match=r"^config data_loader\.args\.augment\.spec_time_masks must be "):
        schema.LOADERS["SpeechCommandsDataLoader"]("data_loader.args",
                                                   {"data_dir": "x", "augment": {"spec_time_masks": -1}})


class Scripted:
    """Fake evaluate returning a dict of metrics from the number of pruned kernels."""

    def __init__(self, balanced_of):
        self.balanced_of = balanced_of

    def __call__(self, model):
        n = sum(len(layer.pruned_kernels) for layer in fixed_point_layers(model).values())
        return {"top1": 0.95, "balanced_accuracy": self.balanced_of(n)}


def test_pruning_searches_the_decision_metric_and_reports_top1_beside_it():
    torch.manual_seed(0)
    model = KeywordLeNet5Clone().eval()
    result = search_pruning(model, Scripted(lambda n: 0.90 - 0.01 * n),
                            {"error_margin": 3.5, "metric": "balanced_accuracy"})
    assert sum(len(k) for k in result.pruned.values()) == 3   # 0.87 passes, 0.86 does not
    report = format_report(result)
    assert "Baseline float32: 0.95000 (top1) | balanced_accuracy: 0.90000" in report
    assert "Accuracy: 0.95000 (top1) | balanced_accuracy: 0.87000" in report


def test_a_combined_floor_restores_the_last_pruned_kernels_until_it_passes():
    torch.manual_seed(0)
    model = KeywordLeNet5Clone().eval()
    result = search_pruning(model, Scripted(lambda n: 0.90 - 0.01 * n),
                            {"error_margin": 5, "metric": "balanced_accuracy"},
                            combined_floor=0.875)
    # the pruning margin alone allowed 5 kernels (0.85); the combined floor keeps 2 (0.88)
    assert sum(len(k) for k in result.pruned.values()) == 2
    assert result.accuracy == pytest.approx(0.88)
    assert len(result.notes) == 3 and result.notes[0].startswith(
        "Back-off: combined balanced_accuracy 0.85000 < floor 0.87500; restored")
    restored = [s for s in result.steps if s.accepted][2:]
    for step in restored:   # restored kernels are live again, with their weights
        layer = fixed_point_layers(model)[step.layer]
        assert layer.kernel_mask[step.kernel] == 1 and layer.weight[step.kernel].abs().sum() > 0


def test_a_quantization_baseline_from_the_unpruned_model_can_keep_everything_float():
    model, x, y = train_toy_model()

    def evaluate(m):
        with torch.no_grad():
            return float((m(x).argmax(1) == y).float().mean())
    own = evaluate(model)
    result = search_quantization(model, evaluate, x, {"error_margin": 1, "metric": "top1"},
                                 baseline_override=own + 0.2)
    assert result.baseline == pytest.approx(own + 0.2)
    assert result.bitwidths == {"conv_weights": 0, "fc_weights": 0, "activations": 0}
    assert any(n.startswith("The float model itself scores") for n in result.notes)


# --- the scripts --------------------------------------------------------------------------------

def _one_line_error(proc, pattern):
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and pattern in lines[0], proc.stderr


@pytest.fixture(scope="module")
def compressed(trained, tmp_path_factory):
    """quantize.py then prune.py -q on the shared trained run (outputs in a temporary folder)."""
    run_dir, _ = trained
    out = tmp_path_factory.mktemp("compressed")
    best = run_dir / "model_best.pth"
    q, p = out / "quantization.yml", out / "pruning.yml"
    run("quantize.py", "-r", best, "-o", q)
    prune_out = run("prune.py", "-r", best, "-q", q, "-o", p).stdout
    return best, q, p, prune_out


def test_reports_print_top1_and_the_decision_metric(compressed):
    _, q, p, prune_out = compressed
    assert "Decision metric: balanced_accuracy, floor" in prune_out
    qdata, pdata = yaml.safe_load(q.read_text()), yaml.safe_load(p.read_text())
    assert qdata["config"]["metric"] == pdata["config"]["metric"] == "balanced_accuracy"
    assert set(qdata["results"]["scores"]["combined"]) >= {"top1", "balanced_accuracy"}
    assert qdata["results"]["accuracy"] == qdata["results"]["scores"]["combined"]["balanced_accuracy"]


def test_finetuning_records_itself_and_later_scripts_apply_its_solutions(compressed, e2e_config):
    best, q, p, _ = compressed
    out = run("train.py", "-r", best, "-q", q, "-p", p, "--epochs", "1").stdout
    assert "distillation: temperature 4.0, alpha 0.5" in out
    run_dir = run_dirs(e2e_config, "e2e_finetune")[-1]
    config = yaml.safe_load((run_dir / "config.yml").read_text())
    assert config["trainer"]["epochs"] == 1                         # --epochs applies
    assert math.isclose(config["optimizer"]["args"]["lr"], 0.0003)  # lr_factor x the float run's rate
    assert "lr_scheduler" not in config
    assert len([l for l in out.splitlines() if l.startswith("epoch ")]) == 1
    tuned = run_dir / "model_best.pth"
    ckpt = torch.load(tuned, weights_only=True)
    assert ckpt["solutions"] == {"quantization": q.read_text(), "pruning": p.read_text()}
    assert ckpt["finetuned_from"]["checkpoint"] == str(best)

    stored = run("test.py", "-r", tuned).stdout
    explicit = run("test.py", "-r", tuned, "-q", q, "-p", p).stdout
    assert "Applying the quantization and pruning solution(s) stored in" in stored
    metrics = [l for l in stored.splitlines() if l.startswith(("Metrics", "Balanced"))]
    assert metrics and metrics == [l for l in explicit.splitlines() if l.startswith(("Metrics", "Balanced"))]
    alone = run("test.py", "-r", tuned, "--no-stored").stdout
    assert "Applying" not in alone
    assert "Applying the quantization and pruning" in run("profile.py", "-r", tuned).stdout

    again = run("train.py", "-r", tuned, "-q", q, "-p", p, "--epochs", "1").stdout
    assert "already finetuned" in again
    assert all("lr 3.00e-04" in l for l in again.splitlines() if l.startswith("epoch "))
    assert not (e2e_config.parent / "saved" / "models" / "e2e_finetune_finetune").exists()


def test_bad_metric_teacher_and_temperature_are_one_line_errors(compressed, e2e_config, tmp_path):
    best, q, p, _ = compressed
    cfg = yaml.safe_load(e2e_config.read_text())
    cfg["optimization"]["quantization"]["metric"] = "f1"
    bad = tmp_path / "metric.yml"
    bad.write_text(yaml.safe_dump(cfg))
    _one_line_error(run("quantize.py", "-r", best, "-c", bad, "-o", tmp_path / "q.yml", check=False), "f1")
    assert not (tmp_path / "q.yml").exists()

    ckpt = torch.load(best, weights_only=True)
    ckpt["keywords"] = ["yes", "no", "up"]
    other = tmp_path / "other_keywords.pth"
    torch.save(ckpt, other)
    for distill, pattern in (({"teacher": str(other)}, "same keywords"), ({"temperature": 0}, "temperature"),
                             ({"alpha": 1.5}, "alpha")):
        cfg = yaml.safe_load(e2e_config.read_text())
        cfg["name"] = "e2e_bad_teacher"
        cfg["optimization"]["finetuning"]["distillation"] = {"enabled": True, **distill}
        path = tmp_path / "distill.yml"
        path.write_text(yaml.safe_dump(cfg))
        _one_line_error(run("train.py", "-c", path, "-r", best, "-q", q, "-p", p, check=False), pattern)
    runs = e2e_config.parent / "saved" / "models" / "e2e_bad_teacher_finetune"
    assert not list(runs.glob("*/*.pth"))   # nothing trained, nothing saved


def test_weight_averaging_saves_the_average_and_resumes_exactly(e2e_config, tmp_path):
    cfg = yaml.safe_load(e2e_config.read_text())
    cfg.update(name="e2e_ema")
    cfg["trainer"].update(ema=0.9, epochs=4, save_period=2)
    path = tmp_path / "ema.yml"
    path.write_text(yaml.safe_dump(cfg))
    run("train.py", "-c", path)
    first = run_dirs(e2e_config, "e2e_ema")[-1]
    run("train.py", "-r", first / "checkpoint-epoch2.pth")
    resumed = run_dirs(e2e_config, "e2e_ema")[-1]
    a = torch.load(first / "checkpoint-epoch4.pth", weights_only=True)
    b = torch.load(resumed / "checkpoint-epoch4.pth", weights_only=True)
    assert a["ema_updates"] == b["ema_updates"] > 0
    for key in ("state_dict", "train_state_dict"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), (key, name)
    assert any(not torch.equal(a["state_dict"][n], a["train_state_dict"][n]) for n in a["state_dict"])


def test_an_ensemble_of_teachers_trains_first_and_the_student_learns_from_their_average(e2e_config, tmp_path):
    cfg = yaml.safe_load(e2e_config.read_text())
    cfg.update(name="e2e_teachers")
    cfg["trainer"].update(distillation={"teachers": 2, "temperature": 2.0, "alpha": 0.8}, epochs=2,
                          save_period=100)
    path = tmp_path / "teachers.yml"
    path.write_text(yaml.safe_dump(cfg))
    out = run("train.py", "-c", path).stdout
    run_dir = run_dirs(e2e_config, "e2e_teachers")[-1]
    assert "student: seed 0, distilled from 2 teachers (temperature 2.0, alpha 0.8)" in out
    student = torch.load(run_dir / "model_best.pth", weights_only=True)
    assert student["teachers"] == [str(run_dir / f"teacher{k}" / "model_best.pth") for k in (1, 2)]
    # teacher 1 is the model a plain training with seed 1000 makes
    cfg["trainer"]["distillation"] = None
    cfg.update(name="e2e_seed1000", seed=1000)
    path.write_text(yaml.safe_dump(cfg))
    run("train.py", "-c", path)
    single = torch.load(run_dirs(e2e_config, "e2e_seed1000")[-1] / "model_best.pth", weights_only=True)
    teacher = torch.load(run_dir / "teacher1" / "model_best.pth", weights_only=True)
    for name, tensor in single["state_dict"].items():
        assert torch.equal(teacher["state_dict"][name], tensor)


def test_the_ensemble_averages_softened_teacher_distributions():
    torch.manual_seed(0)
    members = [KeywordLeNet5Clone(dropout=0.0).eval() for _ in range(3)]
    x = torch.randn(5, 1, 100, 13)
    ensemble = Ensemble(members, 3.0)
    with torch.no_grad():
        expected = torch.stack([F.softmax(m(x) / 3.0, dim=1) for m in members]).mean(0)
        torch.testing.assert_close(F.softmax(ensemble(x) / 3.0, dim=1), expected)
