"""Data-parallel training under torchrun: 2 CPU processes with gloo on loopback, on the real corpus.

The runs switch off dropout, augmentation and class weights: then a 2-process run and a 1-process
run with the same global batch and seed differ only in floating-point summation order (and in how
the last, uneven batch of an epoch is weighted), so their numbers must agree closely, and a run
whose replicas did not share gradients would not (its epoch-2 training loss differs by 0.03).
(With class weights each rank divides its loss by its own half batch's weight sum, which is not
the single-process step.)
"""
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest
import torch
import yaml

from conftest import ROOT
from data_loader.data_loaders import InMemoryLoader
from trainer.distributed import DistributedContext, EvenBatches, per_rank_batch_size
from trainer.evaluation import evaluate
from utils.errors import UserError
from app.restore import data_for_checkpoint, normalization_of, restore_model

EPOCHS = 2
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
# |1 process - 2 processes| allowed per logged number. Measured here: training loss 2e-5,
# val_loss 2e-3, top-1 equal. A run without gradient all-reduce is off by 0.03 (loss, epoch 2).
TOLERANCE = {"loss": 0.002, "top1": 0.005, "val_loss": 0.01, "val_top1": 0.01}


def run(cmd, timeout=300, **env):
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env={**os.environ, **env})


def check(proc):
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def run_dirs(save_dir, name):
    models, logs = save_dir / "models" / name, save_dir / "log" / name
    return (sorted(models.iterdir()) if models.is_dir() else []), (sorted(logs.iterdir()) if logs.is_dir() else [])


def epoch_lines(proc):
    return [l for l in proc.stdout.splitlines() if l.startswith("epoch ")]


def write_config(tmp, corpus_dir, cache_dir, name, **trainer):
    cfg = yaml.safe_load((ROOT / "config_lenet5_keywords.yml").read_text())
    cfg["name"] = name
    cfg["arch"]["args"]["dropout"] = 0.0
    cfg["data_loader"]["args"].update(data_dir=str(corpus_dir), cache_dir=str(cache_dir), download=None)
    cfg["data_loader"]["args"]["augment"]["enabled"] = False
    cfg["trainer"]["class_weights"] = None
    cfg["trainer"]["distillation"] = None
    cfg["trainer"].update({"save_dir": str(tmp / "saved"), "epochs": EPOCHS, "save_period": 1, **trainer})
    cfg["optimization"]["finetuning"]["epochs"] = 1
    path = tmp / f"{name}.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("ddp")


@pytest.fixture(scope="module")
def ddp_run(workdir, corpus_dir, cache_dir):
    """2 processes; the feature cache may be cold, so rank 0 builds it while rank 1 waits."""
    config = write_config(workdir, corpus_dir, cache_dir, "ddp")
    proc = check(run([*TORCHRUN, "train.py", "-c", config]))
    return proc, *run_dirs(workdir / "saved", "ddp")


@pytest.fixture(scope="module")
def single_run(workdir, corpus_dir, cache_dir, ddp_run):
    config = write_config(workdir, corpus_dir, cache_dir, "single")
    proc = check(run([sys.executable, "train.py", "-c", config], OMP_NUM_THREADS="1"))
    return proc, *run_dirs(workdir / "saved", "single")


def load(run_dir, epoch):
    return torch.load(run_dir / f"checkpoint-epoch{epoch}.pth", weights_only=True)


def evaluate_on_validation(ckpt_path, quantization=None, pruning=None):
    """The checkpoint evaluated by one process on the whole validation split."""
    model, ckpt = restore_model(ckpt_path, quantization, pruning)
    data = data_for_checkpoint(ckpt, progress=False)
    return evaluate(model, data.eval_loader("validation", *normalization_of(ckpt)), torch.nn.functional.nll_loss)


def test_torchrun_writes_one_run_whose_numbers_match_one_process(ddp_run, single_run):
    proc, models, logs = ddp_run
    assert len(models) == 1 and len(logs) == 1 and models[0].name == logs[0].name
    assert sorted(p.name for p in models[0].iterdir()) == [
        "checkpoint-epoch1.pth", "checkpoint-epoch2.pth", "config.yml", "model_best.pth"]
    assert sorted(p.name.split(".")[0] for p in logs[0].iterdir()) == ["events", "info"]
    assert len(epoch_lines(proc)) == EPOCHS  # rank 1 prints no training log
    assert len((logs[0] / "info.log").read_text().split("Saving checkpoint")) == EPOCHS + 1
    saved = yaml.safe_load((models[0] / "config.yml").read_text())
    assert saved["data_loader"]["args"]["batch_size"] == 64  # the global batch, not the per-rank 32

    _, single_models, _ = single_run
    for epoch in range(1, EPOCHS + 1):
        two, one = load(models[0], epoch)["log"], load(single_models[0], epoch)["log"]
        for key, tol in TOLERANCE.items():
            assert two[key] == pytest.approx(one[key], abs=tol), (epoch, key)


def test_validation_numbers_are_over_the_whole_split_from_identical_replicas(ddp_run):
    """Each rank evaluates its replica on half the validation split; the reduced numbers equal one
    process evaluating rank 0's checkpoint on all of it, so rank 1's replica is rank 0's."""
    _, models, _ = ddp_run
    logged = load(models[0], EPOCHS)["log"]
    result = evaluate_on_validation(models[0] / f"checkpoint-epoch{EPOCHS}.pth")
    assert logged["val_top1"] == pytest.approx(result["top1"], abs=0.5 / result["n"])  # within half a clip
    assert logged["val_loss"] == pytest.approx(result["loss"], rel=1e-5)


def test_resume_under_torchrun_continues_exactly(ddp_run, workdir):
    _, models, _ = ddp_run
    check(run([*TORCHRUN, "train.py", "-r", models[0] / "checkpoint-epoch1.pth"]))
    resumed = run_dirs(workdir / "saved", "ddp")[0][-1]
    assert resumed != models[0]
    assert "checkpoint-epoch2.pth" in {p.name for p in resumed.iterdir()}
    assert not (resumed / "checkpoint-epoch1.pth").exists()
    a, b = load(models[0], 2), load(resumed, 2)  # same seed, same data: the same numbers, bit for bit
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    assert a["log"]["val_loss"] == b["log"]["val_loss"]


def test_finetuning_under_torchrun_keeps_pruned_kernels_zero(ddp_run, workdir):
    _, models, _ = ddp_run
    source = models[0] / "model_best.pth"
    pruning = workdir / "pruning.yml"
    pruning.write_text("pruned_filters: {conv1: [0, 3], conv2: [5], fc3: [1, 2, 40]}\n")
    quantization = workdir / "quantization.yml"
    quantization.write_text(yaml.safe_dump({"layers": {
        name: {"bits_inputs": 8, "il_inputs": 4, "bits_weights": 8, "il_weights": 1, "bits_accumulator": 32,
               "bits_outputs": 8, "il_outputs": 5} for name in ("conv1", "conv2", "fc3", "fc4")}}))
    check(run([*TORCHRUN, "train.py", "-r", source, "-q", quantization, "-p", pruning]))
    finetuned, _ = run_dirs(workdir / "saved", "ddp_finetune")
    assert len(finetuned) == 1
    ckpt = torch.load(finetuned[0] / "checkpoint-epoch1.pth", weights_only=True)
    before = torch.load(source, weights_only=True)["state_dict"]
    weights = ckpt["state_dict"]
    for layer, kernels in {"conv1": [0, 3], "conv2": [5], "fc3": [1, 2, 40]}.items():
        assert not weights[f"{layer}.weight"][kernels].any() and not weights[f"{layer}.bias"][kernels].any()
    assert not torch.equal(weights["fc4.weight"], before["fc4.weight"])  # it did train
    # rank 1's replica evaluated its half of the validation split with the same weights as rank 0
    result = evaluate_on_validation(finetuned[0] / "checkpoint-epoch1.pth", quantization, pruning)
    assert ckpt["log"]["val_top1"] == pytest.approx(result["top1"], abs=0.5 / result["n"])
    assert ckpt["log"]["val_loss"] == pytest.approx(result["loss"], rel=1e-5)


def test_a_batch_size_that_does_not_divide_over_the_ranks_is_a_user_error(ddp_run, workdir):
    proc = run([*TORCHRUN, "train.py", "-c", workdir / "ddp.yml", "--bs", "63"])
    assert proc.returncode != 0
    # every rank prints it; unbuffered, two ranks' lines may interleave
    assert ("error: batch_size 63 is the global batch and must divide evenly over the 2 processes; use a "
            "multiple of 2 (--bs) or another --nproc_per_node") in proc.stderr, proc.stderr[-3000:]
    assert f'File "{ROOT / "train.py"}"' not in proc.stderr  # no traceback from a rank, only torchrun's report


def worker_pids(parent):
    """Rank -> pid of the processes torchrun (``parent``) started."""
    ranks = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            if ppid != parent:
                continue
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = dict(v.split(b"=", 1) for v in f.read().split(b"\0") if b"=" in v)
        except (FileNotFoundError, ProcessLookupError):
            continue
        if b"RANK" in env:
            ranks[int(env[b"RANK"])] = int(entry)
    return ranks


def test_a_dying_rank_fails_the_whole_job_quickly(ddp_run, workdir, corpus_dir, cache_dir):
    config = write_config(workdir, corpus_dir, cache_dir, "dying", epochs=50)
    with open(workdir / "dying.out", "w") as out:
        proc = subprocess.Popen([*TORCHRUN, "train.py", "-c", config], cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while not list((workdir / "saved" / "models" / "dying").glob("*/checkpoint-epoch1.pth")):
            assert proc.poll() is None and time.monotonic() < deadline, (workdir / "dying.out").read_text()[-3000:]
            time.sleep(0.2)
        os.kill(worker_pids(proc.pid)[1], signal.SIGKILL)  # rank 1 dies in the middle of training
        killed = time.monotonic()
        returncode = proc.wait(timeout=60)
        assert time.monotonic() - killed < 30
        assert returncode != 0
        assert not list((workdir / "saved" / "models" / "dying").glob("*/checkpoint-epoch50.pth"))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


STALLED_PEER = textwrap.dedent("""
    import time
    from datetime import timedelta
    import torch
    from trainer.distributed import DistributedContext
    with DistributedContext.from_environment(timeout=timedelta(seconds=2)) as ctx:
        if ctx.rank == 1:
            time.sleep(60)  # alive but never reaches the collective
        ctx.all_reduce_sum(torch.ones(1, dtype=torch.float64))
""")


def test_a_stalled_peer_makes_the_collective_time_out_instead_of_hanging():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
           "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", STALLED_PEER], cwd=ROOT, env={**env, "RANK": str(r),
                              "LOCAL_RANK": str(r)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for r in (0, 1)]
    try:
        start = time.monotonic()
        _, err = procs[0].communicate(timeout=60)
        assert procs[0].returncode != 0 and time.monotonic() - start < 30
        assert "timed out" in err.lower() or "timeout" in err.lower(), err[-2000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.communicate()


def test_from_environment_is_none_outside_torchrun_and_checks_the_variables():
    assert DistributedContext.from_environment({}) is None
    with pytest.raises(UserError, match="WORLD_SIZE is set but MASTER_ADDR, MASTER_PORT are not"):
        DistributedContext.from_environment({"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"})
    with pytest.raises(UserError, match="must be integers"):
        DistributedContext.from_environment({"WORLD_SIZE": "two", "RANK": "0", "LOCAL_RANK": "0",
                                             "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"})


def test_the_global_batch_is_split_evenly_over_the_ranks():
    assert per_rank_batch_size(64, 2) == 32 and per_rank_batch_size(64, 1) == 64
    with pytest.raises(UserError, match="batch_size 64 is the global batch and must divide evenly over the 3"):
        per_rank_batch_size(64, 3)


@pytest.mark.parametrize("n, world, batch, dropped", [(9, 2, 2, 1), (10, 2, 2, 0), (11, 2, 2, 0), (13, 3, 2, 1),
                                                      (14, 3, 2, 2), (3, 2, 1, 1)])
def test_every_rank_gets_the_same_number_of_batches(n, world, batch, dropped):
    """Uneven shards would leave a rank waiting in an all-reduce its peers never start; the only
    batches left out are single samples on the larger shards."""
    labels = torch.arange(n)
    loaders = [InMemoryLoader(labels.float().view(n, 1), labels, torch.nn.Identity(), batch, shuffle=True, seed=3,
                              rank=r, world_size=world) for r in range(world)]
    for loader in loaders:
        loader.set_epoch(2)
    batches = [list(EvenBatches(loader)) for loader in loaders]
    assert len({len(b) for b in batches}) == 1 and all(len(b) == len(EvenBatches(l)) for b, l in zip(batches, loaders))
    seen = torch.cat([y for rank in batches for _, y in rank])
    assert len(seen) == n - dropped and len(set(seen.tolist())) == len(seen)
    full = [list(loader) for loader in loaders]
    assert all(len(f) - len(b) in (0, 1) and all(len(y) == 1 for _, y in f[len(b):]) for f, b in zip(full, batches))
