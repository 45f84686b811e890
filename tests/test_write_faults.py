"""Writes the file system refuses, in every script: a full disk (ENOSPC, from the kernel's
/dev/full), a folder no one may write to (/sys refuses even root: EACCES), a read-only checkpoint
folder (a 0555 folder, the script run as nobody when the tests run as root), and outputs that are
not regular files (a FIFO, a symbolic link, a device). Each must end in one ``error:`` line naming
the path and what to do, exit status 1, no traceback, no temporary file left and no file that
existed before changed; a checkpoint in a read-only folder is still evaluated."""
import errno
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import ROOT
from script_runs import call_main
from test_bad_input import assert_one_line_error, run_in_process
from tiny import assert_unchanged, quantized_tiny_run, run_folders, snapshot
from utils import atomic
from utils.errors import UserError, exit_on_user_error


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 2-epoch tiny run and its quantization.yml."""
    tmp = tmp_path_factory.mktemp("write-faults")
    corpus, config, run_dir = quantized_tiny_run(tmp)
    return SimpleNamespace(tmp=tmp, corpus=corpus, config=config, run_dir=run_dir,
                           ckpt=run_dir / "model_best.pth", q=run_dir / "quantization.yml")


@pytest.fixture
def full_disk(monkeypatch):
    """Every temporary file utils.atomic writes whose name holds ``fill.at`` is /dev/full: its
    writes fail with the kernel's ENOSPC, as on a full disk ("" fills them all)."""
    fill = SimpleNamespace(at="")
    real = tempfile.mkstemp

    def mkstemp(*args, **kwargs):
        fd, name = real(*args, **kwargs)
        if fill.at in os.path.basename(name):
            os.close(fd)
            fd = os.open("/dev/full", os.O_WRONLY)
        return fd, name
    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    return fill


def _temps(*roots):
    return [p for root in roots for p in Path(root).rglob(".*.tmp")]


DISK_FULL = [   # script, its arguments, the file whose write meets the full disk
    ("train.py", lambda w, t: ["-c", w.config], "config.yml"),
    ("train.py", lambda w, t: ["-c", w.config], "checkpoint-epoch1.pth"),
    ("train.py", lambda w, t: ["-r", w.ckpt, "--epochs", "3"], "checkpoint-epoch3.pth"),
    ("quantize.py", lambda w, t: ["-r", w.ckpt], "quantization.yml"),
    ("quantize.py", lambda w, t: ["-r", w.ckpt], "quantization.png"),   # the YAML is not replaced either
    ("prune.py", lambda w, t: ["-r", w.ckpt], "pruning.yml"),
    ("prune.py", lambda w, t: ["-r", w.ckpt], "pruning.png"),
    ("test.py", lambda w, t: ["-r", w.ckpt], "model_best-test-float.png"),
    ("test.py", lambda w, t: ["-r", w.ckpt, "-q", w.q], "model_best-test-quantized.yml"),
    ("export.py", lambda w, t: ["-r", w.ckpt, "-o", t / "bundle"], "model_compact.pth"),
    ("export.py", lambda w, t: ["-r", w.ckpt, "-q", w.q, "-o", t / "bundle"], "export.yml"),
]


@pytest.mark.parametrize("script,build,at", DISK_FULL, ids=[f"{s}-{a}" for s, _, a in DISK_FULL])
def test_a_full_disk_is_one_line_and_loses_nothing(script, build, at, run, tmp_path, full_disk, capsys):
    args = build(run, tmp_path)
    before = snapshot(run.tmp, tmp_path)
    runs = run_folders(run.tmp)
    partner = run.run_dir / Path(at).with_suffix(".yml")   # a figure's YAML: replaced with it or not at all
    partner_before = partner.is_file()
    full_disk.at = f".{at}."
    status, _, err = run_in_process(script, args, capsys)
    assert_one_line_error(status, err, f"{at}: No space left on device; the disk is full")
    assert_unchanged(before, snapshot(run.tmp, tmp_path))
    assert partner.is_file() == partner_before
    assert not _temps(run.tmp, tmp_path)
    if script == "train.py" and at == "config.yml":   # the run folder it had claimed is gone
        assert run_folders(run.tmp) == runs


@pytest.mark.parametrize("script", ["profile.py", "predict.py"])
def test_scripts_that_write_nothing_run_on_a_full_disk(script, run, full_disk, capsys):
    args = ["-r", run.ckpt] + ([sorted((run.corpus / "one").glob("*.wav"))[0]] if script == "predict.py" else [])
    before = snapshot(run.tmp)
    status, out, err = _main_status(script, args, capsys)
    assert status in (0, None) and "Traceback" not in err, err
    assert out.strip()
    assert_unchanged(before, snapshot(run.tmp))


def _main_status(script, args, capsys):
    """run_in_process for a script that succeeds: main() returns instead of exiting."""
    status = call_main(script, args, run_name="write_fault_case")
    out, err = capsys.readouterr()
    return status, out, err


# train.py as a user runs it, whose info.log meets a full disk (/dev/full behind the log handler's
# stream) once the line of the first checkpoint comes, after that checkpoint was saved
_LOG_FILLS_AT_FIRST_CHECKPOINT = """
import logging, runpy, sys
import parse_config
from logger.logger import InfoLog
real = parse_config.setup_logging

def setup_logging(log_dir, *args, **kwargs):
    real(log_dir, *args, **kwargs)
    log = next(h for h in logging.getLogger().handlers if isinstance(h, InfoLog))

    def fill(record):
        if record.getMessage().startswith("Saving checkpoint"):
            log.setStream(open("/dev/full", "w", encoding="utf-8")).close()
        return True
    log.addFilter(fill)

parse_config.setup_logging = setup_logging
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_a_full_disk_under_info_log_is_one_line_and_keeps_the_saved_checkpoint(run, tmp_path):
    """The disk fills while the run writes info.log: one line naming info.log, exit 1, none of
    logging's ``--- Logging error ---`` tracebacks (nor an ``Exception ignored`` at exit), and the
    checkpoint saved before is complete: the run resumes from it."""
    import torch
    import yaml
    from tiny import tiny_config
    config = tiny_config(tmp_path, run.corpus, name="full_log", epochs=2)
    cfg = yaml.safe_load(config.read_text())
    cfg["data_loader"]["args"]["cache_dir"] = str(run.tmp / "cache")
    config.write_text(yaml.safe_dump(cfg))
    before = snapshot(run.tmp)
    proc = subprocess.run([sys.executable, "-c", _LOG_FILLS_AT_FIRST_CHECKPOINT, "train.py", "-c", str(config)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    [run_dir] = run_folders(tmp_path, "full_log")
    log = tmp_path / "saved" / "log" / "full_log" / run_dir.name / "info.log"
    assert_one_line_error(proc.returncode, proc.stderr,
                          f"cannot write {log}: No space left on device; the disk is full: free some space or "
                          f"write elsewhere")
    assert "Logging error" not in proc.stdout + proc.stderr
    assert {p.name for p in run_dir.iterdir()} == {"config.yml", "checkpoint-epoch1.pth"}
    assert torch.load(run_dir / "checkpoint-epoch1.pth", weights_only=True)["epoch"] == 1
    assert "epoch   1 |" in log.read_text()   # the lines written before the disk filled are kept
    assert_unchanged(before, snapshot(run.tmp))
    assert not _temps(run.tmp, tmp_path)
    resumed = subprocess.run([sys.executable, "train.py", "-r", str(run_dir / "checkpoint-epoch1.pth")],
                             cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (run_folders(tmp_path, "full_log")[-1] / "checkpoint-epoch2.pth").is_file()


NO_PERMISSION = [   # /sys: sysfs refuses a new file to every user, root included
    ("train.py", lambda w, t: ["-c", _config_saving_under(w, t, "/sys/kws")], "/sys/kws/models"),
    ("quantize.py", lambda w, t: ["-r", w.ckpt, "-o", "/sys/quantization.yml"], "/sys/quantization.yml"),
    ("prune.py", lambda w, t: ["-r", w.ckpt, "-o", "/sys/pruning.yml"], "/sys/pruning.yml"),
    ("test.py", lambda w, t: ["-r", w.ckpt, "-o", "/sys"], "/sys/model_best-test-float"),
    ("export.py", lambda w, t: ["-r", w.ckpt, "-o", "/sys/kws-bundle"], "/sys/kws-bundle"),
]


def _config_saving_under(w, tmp, save_dir):
    import yaml
    cfg = yaml.safe_load(w.config.read_text())
    cfg["trainer"]["save_dir"] = save_dir
    path = tmp / "elsewhere.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("script,build,path", NO_PERMISSION, ids=[s for s, _, _ in NO_PERMISSION])
def test_a_folder_that_cannot_be_written_is_one_line(script, build, path, run, tmp_path, capsys):
    args = build(run, tmp_path)
    before = snapshot(run.tmp, tmp_path)
    status, _, err = run_in_process(script, args, capsys)
    assert_one_line_error(status, err, f"cannot write {path}")
    # EACCES for a file, EPERM for a folder; EROFS where the machine mounts /sys read-only (containers)
    assert _SYS_REFUSAL in err
    assert_unchanged(before, snapshot(run.tmp, tmp_path))


def _sys_read_only():
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[1] == "/sys":
            return "ro" in fields[3].split(",")
    return False


_SYS_REFUSAL = "the file system is read-only: write elsewhere" if _sys_read_only() else \
    "check the permissions, or write elsewhere"


def _read_only(folder, argv, mode=0o555):
    """``argv`` run with ``folder`` read-only (chmod ``mode``, 0555). Root ignores permissions through
    CAP_DAC_OVERRIDE, so as root the command runs with that capability (and DAC_READ_SEARCH)
    dropped from its bounding set by util-linux's setpriv: it needs only CAP_SETPCAP, which a
    container's root keeps, where a mount namespace (CAP_SYS_ADMIN) is often refused."""
    os.chmod(folder, mode)
    if os.geteuid() != 0:
        return argv
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", *argv]


def test_a_checkpoint_in_a_read_only_folder_is_tested_and_the_report_goes_here(run, tmp_path):
    ro, here = tmp_path / "ro", tmp_path / "here"
    ro.mkdir()
    here.mkdir()
    shutil.copyfile(run.ckpt, ro / "model_best.pth")
    before = snapshot(ro)
    test = [sys.executable, str(ROOT / "test.py"), "-r", str(ro / "model_best.pth")]
    proc = subprocess.run(_read_only(ro, test), cwd=here, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    reason = "Permission denied"
    assert (f"warning: {ro} cannot be written ({reason}); the report goes to the current folder "
            f"{here} (-o chooses another)") in proc.stdout
    assert (here / "model_best-test-float.yml").is_file() and (here / "model_best-test-float.png").is_file()
    assert "Balanced accuracy" in proc.stdout
    assert_unchanged(before, snapshot(ro))
    assert sorted(p.name for p in ro.iterdir()) == ["model_best.pth"]
    # -o still decides when given, and a refused -o is an error, not a fallback
    os.chmod(ro, 0o755)
    proc = subprocess.run(_read_only(ro, test + ["-o", str(ro)]), cwd=here, capture_output=True, text=True,
                          timeout=600)
    assert_one_line_error(proc.returncode, proc.stderr, f"cannot write {ro}/model_best-test-float")
    assert sorted(p.name for p in ro.iterdir()) == ["model_best.pth"]
    os.chmod(ro, 0o755)


@pytest.mark.parametrize("folder", ["", "bed", "one", "_background_noise_"])
def test_a_corpus_folder_that_cannot_be_read_is_one_line(folder, run, tmp_path):
    """The corpus, a word's, a keyword's or the noise folder without read permission (chmod 0):
    one line naming it, where it was a traceback, an error advising to write elsewhere, or (the
    noise folder) silently no noise."""
    corpus, out = tmp_path / "corpus", tmp_path / "out"
    shutil.copytree(run.corpus, corpus)
    out.mkdir()
    before = snapshot(run.tmp)
    test = [sys.executable, str(ROOT / "test.py"), "-r", str(run.ckpt), "--data-dir", str(corpus), "-o", str(out)]
    proc = subprocess.run(_read_only(corpus / folder, test, mode=0), cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)
    os.chmod(corpus / folder, 0o755)
    path = corpus / folder if folder else corpus
    assert_one_line_error(proc.returncode, proc.stderr,
                          f"cannot read the folder {path}: Permission denied; check its permissions")
    assert list(out.iterdir()) == []
    assert_unchanged(before, snapshot(run.tmp))


# ---- -o never replaces what is not a regular file ------------------------------------------------

def _fifo(tmp):
    os.mkfifo(tmp / "fifo")
    return tmp / "fifo"


def _link(tmp):
    (tmp / "target.yml").write_text("mine: 1\n")
    (tmp / "link.yml").symlink_to(tmp / "target.yml")
    return tmp / "link.yml"


NOT_REGULAR = [
    ("quantize.py", lambda w, t: ["-r", w.ckpt, "-o", _fifo(t)], "is a FIFO, not a regular file"),
    ("prune.py", lambda w, t: ["-r", w.ckpt, "-o", _link(t)], "is a symbolic link, not a regular file"),
    ("export.py", lambda w, t: ["-r", w.ckpt, "-o", _fifo(t)], "is a file, not a folder"),
    ("test.py", lambda w, t: ["-r", w.ckpt, "-o", _fifo(t)], "is not a folder"),
]


@pytest.mark.parametrize("script,build,pattern", NOT_REGULAR, ids=[s for s, _, _ in NOT_REGULAR])
def test_o_never_replaces_a_non_regular_file(script, build, pattern, run, tmp_path, capsys):
    args = build(run, tmp_path)
    before = snapshot(run.tmp)
    kinds = {p.name: stat.S_IFMT(p.lstat().st_mode) for p in tmp_path.iterdir()}
    status, _, err = run_in_process(script, args, capsys)
    assert_one_line_error(status, err, pattern)
    assert {p.name: stat.S_IFMT(p.lstat().st_mode) for p in tmp_path.iterdir()} == kinds
    assert_unchanged(before, snapshot(run.tmp))


def test_a_device_or_a_folder_is_never_replaced_by_a_write(tmp_path):
    """The check is made before any temporary file exists (so /dev/null itself is never at risk)."""
    for path, kind in (("/dev/null", "a character device"), (tmp_path, "a folder")):
        with pytest.raises(UserError, match=f"is {kind}, not a regular file, and is not replaced"):
            atomic.write_text(path, "x")
    assert os.path.exists("/dev/null") and stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert list(tmp_path.iterdir()) == []


# ---- the pieces ------------------------------------------------------------------------------------

def test_a_refused_write_is_a_write_error_that_is_still_an_os_error(tmp_path, full_disk):
    (tmp_path / "kept.yml").write_text("old: 1\n")
    with pytest.raises(atomic.WriteError) as refused:
        atomic.write_text(tmp_path / "kept.yml", "new: 2\n")
    assert isinstance(refused.value, OSError) and refused.value.errno == errno.ENOSPC
    assert str(refused.value) == (f"cannot write {tmp_path / 'kept.yml'}: No space left on device; "
                                  f"the disk is full: free some space or write elsewhere")
    assert (tmp_path / "kept.yml").read_text() == "old: 1\n" and [p.name for p in tmp_path.iterdir()] == ["kept.yml"]


def test_files_written_together_are_replaced_together(tmp_path, full_disk):
    """A YAML report and its PNG: when the second cannot be written, the first is not replaced."""
    yml, png = tmp_path / "r.yml", tmp_path / "r.png"
    full_disk.at = "never"
    atomic.write_together({yml: b"old: 1\n", png: b"old png"})
    full_disk.at = ".r.png."
    with pytest.raises(atomic.WriteError, match="r.png: No space left on device"):
        atomic.write_together({yml: b"new: 2\n", png: b"new png"})
    assert yml.read_bytes() == b"old: 1\n" and png.read_bytes() == b"old png"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.png", "r.yml"]
    full_disk.at = "never"
    atomic.write_together({yml: b"new: 2\n", png: b"new png"})
    assert yml.read_bytes() == b"new: 2\n" and png.read_bytes() == b"new png"


def test_a_refused_write_outside_the_atomic_writer_is_one_line(capsys):
    """A writer that is not utils.atomic (a log file, tensorboard's events): the scripts' wrapper
    turns the kernel's ENOSPC into one line too; other OS errors keep their traceback."""
    @exit_on_user_error
    def main():
        with open("/dev/full", "w") as f:
            f.write("x")
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "No space left on device; the disk is full" in err

    @exit_on_user_error
    def other():
        os.rmdir("/nonexistent-kws-folder")
    with pytest.raises(FileNotFoundError):
        other()


def test_a_folder_that_takes_no_new_file_is_one_line():
    """/proc/self exists but creating a file in it is ENOENT: a refused write too, not a traceback."""
    with pytest.raises(atomic.WriteError, match=r"^cannot write /proc/self/report.yml: No such file or directory; "
                                                r"that folder takes no new files: write elsewhere$"):
        atomic.write_text("/proc/self/report.yml", "x")
