"""The Speech Commands 12-class task (unknown, the ten command words, silence) through every
stage, on the shared corpus as a user runs it (issue 26): train (3 epochs: a model near chance,
which is all these checks need), quantize.py, prune.py -q, finetuning, test.py, profile.py,
export.py, predict.py. Every stage takes the 12 classes from the checkpoint. And every
compression step prints the false-alarm change it accepts (issue 24), which is checked here
against counts made by hand from the model's predictions on validation."""
import re
from pathlib import Path

import pytest
import torch
import yaml

from conftest import CORPUS, ROOT, run_script

from app.restore import data_for_checkpoint
from app.workflow import validation_setup

NAMES = ["unknown", "yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "silence"]
LINE = re.compile(r"^False alarms on validation, (.+?): (\d+\.\d\d)% -> (\d+\.\d\d)% of non-keyword clips"
                  r"(?: \((\d+) -> (\d+) of (\d+) classified as a keyword\))?$", re.M)


@pytest.fixture(scope="module")
def chain(tmp_path_factory, cache_dir):
    """The 12-class task (unknown, the ten command words, silence) on the shared corpus, trained
    3 epochs, then quantize.py, prune.py -q and finetuning (2 epochs), as a user runs them."""
    tmp = tmp_path_factory.mktemp("sc12")
    cfg = yaml.safe_load((ROOT / "config_lenet5_sc12.yml").read_text())
    cfg["name"] = "sc12"
    cfg["data_loader"]["args"].update(data_dir=str(CORPUS), download=None, cache_dir=str(cache_dir))
    cfg["lr_scheduler"]["args"]["T_max"] = 3
    cfg["trainer"].update(save_dir=str(tmp / "saved"), epochs=3, tensorboard=False)
    cfg["optimization"]["finetuning"]["epochs"] = 2
    path = tmp / "sc12.yml"
    path.write_text(yaml.safe_dump(cfg))
    run_script("train.py", "-c", path)
    run_dir = next((tmp / "saved" / "models" / "sc12").iterdir())
    best = run_dir / "model_best.pth"
    q = run_script("quantize.py", "-r", best).stdout
    qyml = run_dir / "quantization.yml"
    p = run_script("prune.py", "-r", best, "-q", qyml).stdout
    pyml = run_dir / "pruning.yml"
    f = run_script("train.py", "-r", best, "-q", qyml, "-p", pyml).stdout
    return best, qyml, pyml, q, p, f


def _validation_counts(checkpoint, quantization=None, pruning=None):
    """(false alarms, clips of no keyword) on validation, counted by hand from the predictions:
    unknown (0) or silence (11) clips predicted as one of the ten keywords (1..10)."""
    model, ckpt, _, inputs = validation_setup(checkpoint, quantization, pruning)
    labels = data_for_checkpoint(ckpt, None, progress=False).split("validation").labels
    with torch.no_grad():
        pred = model.eval()(inputs).argmax(dim=1)
    quiet = (labels == 0) | (labels == 11)
    return int((quiet & (pred >= 1) & (pred <= 10)).sum()), int(quiet.sum())


ADVICE = {"quantization": "; finetune the quantized model (python3 train.py -r ",
          "pruning": "; finetune the pruned model (python3 train.py -r ",
          "finetuning": "; optimization.finetuning.monitor 'min val_false_alarm_rate' keeps the epoch with the fewest"}


def _one_line(out, step):
    """The step's false-alarm line, and its warning exactly when the false alarms more than doubled."""
    found = [m for m in LINE.finditer(out) if m.group(1).startswith(step)]
    assert len(found) == 1, out[-3000:]
    m = found[0]
    if m.group(4) is not None:  # the counts: exact
        doubled = int(m.group(5)) > 2 * int(m.group(4))
    else:
        doubled = float(m.group(3)) > 2 * float(m.group(2))
    # the step's own warnings; the detector's calibration has its own (tests/test_stream.py)
    warnings = [li for li in out.splitlines()
                if li.startswith("warning: ") and not li.startswith("warning: at this operating point")]
    assert len(warnings) == (1 if doubled else 0), out[-3000:]
    if doubled:
        what = "more than doubled the false alarms" if float(m.group(2)) else "brought false alarms where"
        assert warnings[0].startswith(f"warning: {m.group(1)} {what}") and ADVICE[step] in warnings[0], warnings
    return m


def _percent(counts):
    return f"{100 * counts[0] / counts[1]:.2f}"


def test_quantize_prints_the_false_alarm_change_of_the_solution_it_saves(chain):
    best, qyml, _, out, _, _ = chain
    m = _one_line(out, "quantization")
    before, after = _validation_counts(best), _validation_counts(best, qyml)
    assert (m.group(2), m.group(3)) == (_percent(before), _percent(after))
    assert [int(m.group(i)) for i in (4, 5, 6)] == [before[0], after[0], after[1]]
    assert after[1] == before[1] > 0
    # the line comes after the report and before what was written
    assert out.index("Network quantization results.") < m.start() < out.index("Saving config:")


def test_prune_q_prints_the_change_from_the_quantized_model(chain):
    best, qyml, pyml, _, out, _ = chain
    m = _one_line(out, "pruning")
    before, after = _validation_counts(best, qyml), _validation_counts(best, qyml, pyml)
    assert (m.group(2), m.group(3)) == (_percent(before), _percent(after))
    assert [int(m.group(i)) for i in (4, 5, 6)] == [before[0], after[0], after[1]]


def test_finetuning_prints_the_change_from_its_start_to_its_best_epoch(chain):
    best, qyml, pyml, _, _, out = chain
    m = _one_line(out, "finetuning")
    epoch = re.search(r"^.*Best epoch (\d+) \(model_best.pth\)", out, re.M).group(1)
    assert m.group(1) == f"finetuning (start -> best epoch {epoch})"
    run = Path(re.search(r"^.*F=(\S+)$", out, re.M).group(1))
    before, after = _validation_counts(best, qyml, pyml), _validation_counts(run / "model_best.pth")
    assert (m.group(2), m.group(3)) == (_percent(before), _percent(after))
    # the best epoch's logged val_fa is the same silence-aware rate
    logged = re.search(rf"^.*epoch +{epoch} \|.* val_fa (\d\.\d{{4}})", out, re.M).group(1)
    assert float(logged) == pytest.approx(after[0] / after[1], abs=5e-5)


def test_test_report_counts_silence_aware_false_alarms(chain):
    best, qyml, pyml, _, _, _ = chain
    out = run_script("test.py", "-r", best, "-q", qyml, "-p", pyml).stdout
    m = re.search(r"False alarms: (\d+\.\d\d)% \((\d+) of (\d+) unknown-word and silence clips classified "
                  r"as a keyword\)", out)
    assert m, out[-2000:]
    assert float(m.group(1)) == pytest.approx(100 * int(m.group(2)) / int(m.group(3)), abs=0.005)


def _finetuned(chain):
    return Path(re.search(r"^.*F=(\S+)$", chain[5], re.M).group(1)) / "model_best.pth"


def test_checkpoints_carry_the_twelve_classes(chain):
    best = chain[0]
    for path in (best, _finetuned(chain)):
        ckpt = torch.load(path, weights_only=True)
        assert ckpt["class_names"] == NAMES and ckpt["keywords"] == NAMES[1:11]
        assert ckpt["state_dict"]["fc4.weight"].shape[0] == 12


def test_test_report_of_twelve_classes_names_every_row(chain):
    finetuned = _finetuned(chain)
    out = run_script("test.py", "-r", finetuned).stdout
    lines = out.splitlines()
    head = next(i for i, li in enumerate(lines) if li.startswith("Predicted"))
    assert lines[head].split() == ["Predicted"] + [str(c) for c in range(12)] + ["All"]
    rows = lines[head + 2:head + 15]
    assert [r.split()[:2] for r in rows[:12]] == [[str(c), name] for c, name in enumerate(NAMES)]
    assert rows[12].split()[0] == "All"
    counts = [[int(v) for v in r.split()[2:]] for r in rows[:12]]
    assert all(len(r) == 13 and sum(r[:12]) == r[12] for r in counts)
    # the rows are the test split's clips of each class, counted from the loader's labels
    ckpt = validation_setup(finetuned)[1]
    labels = data_for_checkpoint(ckpt, None, progress=False).split("test").labels
    assert [r[12] for r in counts] == [int((labels == c).sum()) for c in range(12)]
    per_class = [re.match(r"^\s+(\d+) (\S+)\s+recall (\d\.\d{4})  precision (\d\.\d{4})  \(n=(\d+)\)$", li)
                 for li in lines if re.match(r"^\s+\d+ \S+\s+recall ", li)]
    assert [(int(m.group(1)), m.group(2), int(m.group(5))) for m in per_class] == \
        [(c, name, counts[c][12]) for c, name in enumerate(NAMES)]
    for c, m in enumerate(per_class):
        assert float(m.group(3)) == pytest.approx(counts[c][c] / counts[c][12], abs=5e-5)
    report = yaml.safe_load(finetuned.with_name("model_best-test-quantized-pruned.yml").read_text())
    assert list(report["recall"]) == NAMES and list(report["precision"]) == NAMES
    assert report["confusion"][:12] == counts


def test_profile_export_and_predict_follow_the_twelve_classes(chain, tmp_path):
    finetuned = _finetuned(chain)
    out = run_script("profile.py", "-r", finetuned).stdout
    assert re.search(r"^MACs/classification: \d+$", out, re.M) and re.search(r"^False alarms: ", out, re.M)
    bundle = tmp_path / "bundle"
    run_script("export.py", "-r", finetuned, "-o", bundle)
    header = (bundle / "model.h").read_text()
    assert "#define KWS_N_CLASSES 12" in header
    assert "#define KWS_CLASS_NAMES {" + ", ".join(f'"{n}"' for n in NAMES) + "}" in header
    assert yaml.safe_load((bundle / "export.yml").read_text())["class_names"] == NAMES
    clip = sorted((CORPUS / "yes").glob("*.wav"))[0]
    line = run_script("predict.py", "-r", finetuned, clip).stdout.strip().splitlines()[-1]
    assert [word for word in line.split("->", 1)[1].split()[1::2]][-12:] == NAMES, line
