"""README's commands work as a newcomer pastes them after ``make venv`` and ``. .venv/bin/activate``.

The chain block under "## The chain" runs as written in bash, with this interpreter's folder first
on PATH (what activating the venv does), in a folder that mirrors the project (so ``saved/``,
``data/`` and ``deploy_out/`` are temporary) with ``../shared`` beside it. The only change is a
small epoch count appended to each ``train.py`` line. Every other README command line and every
script's ``--help`` is checked against the options the script really has.
"""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

README = ROOT / "README.md"
SCRIPTS = ("train", "test", "profile", "quantize", "prune", "export", "predict")
TRAIN_EPOCHS, FINETUNE_EPOCHS = 2, 1


def code_blocks(text):
    return re.findall(r"^```[^\n]*\n(.*?)^```", text, re.S | re.M)


def chain_block():
    section = README.read_text().split("\n## The chain", 1)[1].split("\n## ", 1)[0]
    return code_blocks(section)[0]


def with_epochs(line):
    """A train.py line with ``--epochs N`` before its comment (fewer epochs, same command)."""
    m = re.match(r"^(python3 train\.py[^#]*?)(\s+#.*)?$", line)
    if not m:
        return line
    epochs = FINETUNE_EPOCHS if " -q " in line else TRAIN_EPOCHS
    return f"{m.group(1)} --epochs {epochs}{m.group(2) or ''}"


def venv_env():
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(Path(sys.executable).parent.parent)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


@pytest.fixture(scope="module")
def project(tmp_path_factory, corpus_dir, cache_dir):
    """<tmp>/proj mirrors the project by symlinks, <tmp>/shared is the real ../shared, and the
    feature cache is the session's (the README's features are the e2e tests' features)."""
    base = tmp_path_factory.mktemp("readme")
    proj = base / "proj"
    proj.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in {"saved", "data", "deploy_out", ".git", ".pytest_cache"}:
            (proj / entry.name).symlink_to(entry)
    (proj / "data").mkdir()
    (proj / "data" / "cache").symlink_to(cache_dir)
    (base / "shared").symlink_to(corpus_dir.parents[1])
    return proj


def test_python3_after_activation_is_the_venv_with_torch():
    out = subprocess.run(["python3", "-c", "import sys, torch; print(sys.prefix)"], env=venv_env(),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()) == Path(sys.prefix)


@pytest.fixture(scope="module")
def chain(project):
    """README's chain block run as written (train.py lines with a small --epochs): (process, project)."""
    lines = [line for line in chain_block().splitlines() if line.strip()]
    assert any("--data-dir ../shared/data/kws_corpus" in line for line in lines if "train.py -c" in line)
    if shutil.which("gcc") is None:
        lines = [line for line in lines if "gcc" not in line]
    script = "set -ex\n" + "\n".join(with_epochs(line) for line in lines) + "\n"
    proc = subprocess.run(["bash", "-c", script], cwd=project, env=venv_env(), capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    return proc, project


def runs(project, name):
    return sorted((project / "saved" / "models" / name).iterdir())


def test_the_chain_runs_as_written_and_writes_what_it_says(chain):
    proc, project = chain
    [run] = runs(project, "KeywordLeNet5Clone_exp1")
    for name in ("model_best.pth", "config.yml", "quantization.yml", "quantization.png", "pruning.yml",
                 "pruning.png", "model_best-test-float.yml", "model_best-test-quantized-pruned.yml"):
        assert (run / name).is_file(), name
    [finetuned] = runs(project, "KeywordLeNet5Clone_exp1_finetune")
    assert (finetuned / "model_best.pth").is_file()
    for name in ("model.c", "model.h", "main.c", "model_compact.pth", "export.yml"):
        assert (project / "deploy_out" / name).is_file(), name
    if shutil.which("gcc") is not None:
        assert (project / "deploy_out" / "kws").is_file()
    out = proc.stdout + proc.stderr
    assert "ModuleNotFoundError" not in out and "Traceback" not in out


def test_train_ends_with_its_run_best_epoch_and_next_command(chain):
    proc, project = chain
    [run] = runs(project, "KeywordLeNet5Clone_exp1")
    [finetuned] = runs(project, "KeywordLeNet5Clone_exp1_finetune")
    out = proc.stdout
    assert re.search(r"^Best epoch [12] \(model_best\.pth\), validation: balanced_accuracy \d\.\d{4}, "
                     r"top1 \d\.\d{4}, false_alarm_rate \d\.\d{4}$", out, re.M)
    assert re.search(rf"^R=saved/models/KeywordLeNet5Clone_exp1/{run.name}\npython3 test\.py -r \$R/model_best\.pth$",
                     out, re.M)
    assert re.search(rf"^F=saved/models/KeywordLeNet5Clone_exp1_finetune/{finetuned.name}\n"
                     r"python3 test\.py -r \$F/model_best\.pth$", out, re.M)


def test_finetuning_counts_the_parameters_pruning_left(chain):
    out = chain[0].stdout
    remaining = re.search(r"^Trainable parameters: (\d+) of 12764 remain after pruning", out, re.M)
    profiled = re.findall(r"^Number of Parameters: (\d+)", out, re.M)   # profile.py, then profile.py -q -p
    assert remaining and len(profiled) == 2
    assert int(remaining.group(1)) == int(profiled[1]) < 12764


def test_outputs_say_what_they_mean(chain):
    out = chain[0].stdout
    # test.py: the corpus and split it evaluated, and the files it wrote
    assert out.count("Evaluated: test split of ../shared/data/kws_corpus (806 clips)") == 3
    assert re.search(r"^Wrote \S+model_best-test-float\.yml and \S+model_best-test-float\.png", out, re.M)
    # the searches' baselines: labelled numbers; prune.py -q's baseline is the quantized model's
    assert re.search(r"^Baseline float32: \d\.\d{5} \(top1\) \| balanced_accuracy: \d\.\d{5}", out, re.M)
    assert re.search(r"^Baseline \(quantized model\): \d\.\d{5} \(top1\) \| balanced_accuracy", out, re.M)
    assert "Error margin exceeded" not in out
    # the searches and the export end with what they wrote and the next command
    assert re.search(r"^Wrote \S+/quantization\.yml and \S+/quantization\.png .*\nNext: python3 prune\.py -r "
                     r"\S+/model_best\.pth -q \S+/quantization\.yml$", out, re.M)
    assert re.search(r"^Next: python3 test\.py -r \S+ -q \S+/quantization\.yml -p \S+/pruning\.yml$", out, re.M)
    assert "Next: (cd deploy_out && gcc -std=c99" in out
    # test.py and profile.py end with the command that follows them in the chain
    assert re.search(r"^Next: python3 quantize\.py -r \S+/model_best\.pth$", out, re.M)
    assert re.search(r"^Next: python3 train\.py -r \S+/model_best\.pth -q \S+/quantization\.yml "
                     r"-p \S+/pruning\.yml   \(finetunes\)$", out, re.M)
    assert re.search(r"^Nothing written \(profile\.py only prints\)\nNext: python3 ", out, re.M)
    assert re.search(r"\(confusion matrix\)\nNext: python3 export\.py -r \S+_finetune/\d{4}_\d{6}/model_best\.pth "
                     r"-o deploy_out$", out, re.M)


def test_demo_summary_names_the_chosen_solution(chain):
    from app.demo import chosen_solution
    [run] = runs(chain[1], "KeywordLeNet5Clone_exp1")
    q = yaml.safe_load((run / "quantization.yml").read_text())["results"]["bitwidths"]
    rate = yaml.safe_load((run / "pruning.yml").read_text())["results"]["rate"]
    line = chosen_solution(run / "quantization.yml", run / "pruning.yml")
    assert line == (f"Chosen: conv weights {q['conv_weights'] or 'float32'}, fc weights {q['fc_weights'] or 'float32'}, "
                    f"activations {q['activations'] or 'float32'} bits; pruning rate {100 * rate:.2f}% of the weights")


def test_tensorboard_reads_the_training_logs(chain):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    [log] = sorted((chain[1] / "saved" / "log" / "KeywordLeNet5Clone_exp1").iterdir())
    events = EventAccumulator(str(log))
    events.Reload()
    assert {"loss", "val_balanced_accuracy", "val_false_alarm_rate"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("loss")] == [1, 2]
    assert shutil.which("tensorboard", path=str(Path(sys.executable).parent)) is not None


def help_text(script):
    proc = subprocess.run([sys.executable, f"{script}.py", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def options_without_help(text):
    """Option lines of an argparse --help that have no description inline or on the next line."""
    lines = text.split("options:", 1)[1].splitlines()
    missing = []
    for i, line in enumerate(lines):
        if not re.match(r"^  -", line):
            continue
        inline = re.match(r"^  (-\S.*?)(\s{2,})\S", line)
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if not inline and not re.match(r"^\s{10,}\S", nxt):
            missing.append(line.strip())
    return missing


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_option_has_help_text(script):
    text = help_text(script)
    assert options_without_help(text) == []
    if script == "train":
        assert "KeywordLeNet5Clone" not in text


def test_every_readme_command_uses_options_the_script_has():
    helps = {}
    checked = 0
    for block in code_blocks(README.read_text()):
        for line in block.splitlines():
            m = re.search(r"python3 (\w+)\.py(.*)", line)
            if not m or m.group(1) not in SCRIPTS:
                continue
            helps.setdefault(m.group(1), help_text(m.group(1)))
            for flag in re.findall(r"(?<!\S)(--?[A-Za-z][\w-]*)", m.group(2).split(" #")[0]):
                assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", helps[m.group(1)]), (line, flag)
            checked += 1
    assert checked >= 15


def test_demo_echoes_the_command_it_really_runs(capsys):
    from app.demo import step
    assert step("echo", "-c", "import sys; print(sys.executable)").strip() == sys.executable
    echoed = capsys.readouterr().out.splitlines()[1]
    try:
        shown = str(Path(sys.executable).relative_to(ROOT))   # .venv/bin/python, as typed in the project
    except ValueError:
        shown = sys.executable
    assert echoed == f"$ {shown} -c import sys; print(sys.executable)"
