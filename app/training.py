"""What train.py does: build everything from the config, then train, resume or finetune.

Finetuning (``-r CKPT -q ... -p ...``, see trainer/finetuning.py) starts a new run from the
checkpoint's weights with a fresh optimizer; train.py builds its config with
``finetune_config`` before the run folder is written, so the run's config.yml says what ran.
"""
from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

import data_loader.data_loaders as module_data
import model.loss as module_loss
import model.metric as module_metric
from model.registry import build_model, make_model
from optimization.profiling import profile_model
from optimization.scores import false_alarm_change
from trainer.distributed import per_rank_batch_size
from configuration.schema import (DetectorConfig, parse_detector_config, parse_finetuning_config,
                                  parse_run_config, parse_trainer_config)
from trainer.finetuning import build_teacher, check_teacher_outputs, explain, finetune_record, float_run_rate
from trainer.distillation import Distillation, Ensemble
from trainer.trainer import Trainer
from utils.atomic import make_folder
from utils.checkpoint import load_checkpoint
from app.calibration import calibrate_checkpoint, deaf_warning
from app.stream_test import STREAM_METRICS, StreamValidation
from model.detector import DetectorSettings
from app.calibration import describe as describe_detector
from utils.errors import UserError
from app.restore import apply_solutions, normalization_of, stored_solutions
from utils.seeding import prepare_device, seed_everything

if TYPE_CHECKING:
    from app.restore import SolutionSource
    from parse_config import ConfigParser
    from trainer.distributed import DistributedContext
    from utils.checkpoint import Checkpoint


def _load_best(path, source):
    return build_model(load_checkpoint(path), source=source).eval()


@dataclass(frozen=True)
class Shared:
    """What every training of one train.py run shares (the teachers' and the student's): the
    config, the data and its normalization, progress bars, the torchrun context and the logger."""
    config: object
    data: object
    mean: object
    std: object
    progress: bool
    distributed: object
    logger: object


@dataclass(frozen=True)
class Start:
    """What one training starts from: nothing (from scratch), a checkpoint to resume, or a
    checkpoint to finetune (``finetune``) under quantization and/or pruning solutions."""
    checkpoint: object = None
    finetune: bool = False
    quantization: object = None
    pruning: object = None


def run_training(config: ConfigParser, checkpoint: Checkpoint | None = None, quantization: SolutionSource | None = None,
                 pruning: SolutionSource | None = None, progress: bool = True,
                 distributed: DistributedContext | None = None) -> dict[str, float]:
    """Train from scratch (no checkpoint), resume (checkpoint only) or finetune (checkpoint with a
    quantization and/or pruning solution). A resumed finetuning run applies the solutions its
    checkpoint carries. Returns the last epoch's log.

    ``trainer.distillation: {teachers: K, temperature, alpha}`` first trains K models of the same
    architecture (seeds seed + 1000, seed + 2000, ...; each in ``teacher<k>/`` of the run folder),
    then the run's model (seed ``seed``) learns from the average of their softened outputs as well
    as from the labels. On a corpus with a handful of speakers per keyword, which solution one
    initialisation lands in decides how well it hears a new speaker; an average of several hears
    new speakers better, and the student keeps the size of one (whether it inherits the
    average's quality depends on the corpus: see README, Results on real speech)."""
    finetune = checkpoint is not None and bool(quantization or pruning)
    if (quantization or pruning) and checkpoint is None:
        raise UserError("-q/-p finetune a trained model: give its checkpoint with -r as well")
    if checkpoint is not None and not finetune:  # resuming: the solutions it was trained under
        quantization, pruning = stored_solutions(checkpoint)
    run = parse_run_config(config)
    seed, deterministic = run.seed, run.deterministic
    soft = parse_trainer_config(config["trainer"]).distillation
    # no teachers when resuming or finetuning (those continue one model)
    teachers, temperature, alpha = (0 if checkpoint is not None else soft.teachers), soft.temperature, soft.alpha
    rank, world = (distributed.rank, distributed.world_size) if distributed is not None else (0, 1)
    logger = config.get_logger("train")

    # Each rank draws its own dropout masks; DDP copies rank 0's initial weights to the others.
    seed_everything(seed + rank, deterministic)
    data = config.init_obj("data_loader", module_data, seed=seed, progress=progress and rank == 0)
    if distributed is not None:
        data.batch_size = per_rank_batch_size(data.batch_size, world)  # the config keeps the global batch
        with distributed.main_first():  # rank 0 builds the feature cache, the others then read it
            for split in ("train", "validation"):
                data.split(split)
    if checkpoint is not None:
        mean, std = normalization_of(checkpoint)
    else:
        mean, std = data.normalization()
    shared = Shared(config, data, mean, std, progress, distributed, logger)
    ensemble = None
    if teachers:
        members, paths = [], []
        for k in range(1, teachers + 1):
            seed_k = seed + 1000 * k
            logger.info(f"teacher {k}/{teachers}: seed {seed_k}")
            seed_everything(seed_k + rank, deterministic)
            data.seed = seed_k
            folder = config.save_dir / f"teacher{k}"
            _train_one(shared, folder)
            if distributed is not None:
                distributed.barrier()
            paths.append(str(folder / "model_best.pth"))
            members.append(_load_best(folder / "model_best.pth", f"teacher {k}"))
        ensemble = (Ensemble(members, temperature), paths)
        logger.info(f"student: seed {seed}, distilled from {teachers} teachers "
                    f"(temperature {temperature}, alpha {alpha})")
        seed_everything(seed + rank, deterministic)
        data.seed = seed
    return _train_one(shared, config.save_dir, Start(checkpoint, finetune, quantization, pruning), ensemble)


def _train_one(shared, checkpoint_dir, start=Start(), ensemble=None):
    """One training (or resume, or finetuning) from ``start`` into ``checkpoint_dir``; returns the
    last epoch's log. ``ensemble``: (Ensemble, teacher paths) to distil from, with the temperature
    and alpha of ``trainer.distillation``."""
    config, data, mean, std, logger = shared.config, shared.data, shared.mean, shared.std, shared.logger
    progress, distributed = shared.progress, shared.distributed
    checkpoint, finetune, quantization, pruning = start.checkpoint, start.finetune, start.quantization, start.pruning
    rank, world = (distributed.rank, distributed.world_size) if distributed is not None else (0, 1)
    if checkpoint is not None:
        model = build_model(checkpoint, source=str(config.resume))
    else:
        model = make_model(config["arch"]["type"], config["arch"].get("args"), data.features.to_dict(),
                           checked=True)
    run, settings = parse_run_config(config), parse_trainer_config(config["trainer"])
    num_classes = run.num_classes
    apply_solutions(model, quantization, pruning)
    logger.info(model)
    if pruning:  # masked kernels get no gradient: count what finetuning really trains
        logger.info(f"Trainable parameters: {profile_model(model).parameters} of "
                    f"{model.trainable_parameters()} remain after pruning (pruned kernels stay zero)")

    train_loader = data.train_loader(mean, std, rank=rank, world_size=world)
    valid_loader = data.eval_loader("validation", mean, std, rank=rank, world_size=world)

    if distributed is not None:  # one device per rank; n_gpu applies to a single process only
        device = distributed.device
        model = distributed.wrap(model.to(device))
    else:
        device, device_ids = prepare_device(run.n_gpu)
        model = model.to(device)
        if len(device_ids) > 1:
            model = torch.nn.DataParallel(model, device_ids=device_ids)

    loss_name = config["loss"]
    criterion = module_loss.loss_by_name(loss_name)
    weights = module_loss.class_weights(settings.class_weights)
    if weights is not None:
        criterion = functools.partial(criterion, weight=weights.to(device))
        criterion.__name__ = loss_name
        logger.info(f"class weights: {[round(float(w), 3) for w in weights]}")
    data.release("validation")  # its loader holds the converted inputs
    metrics = [module_metric.metric_by_name(name, "config metric") for name in config["metrics"]]

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = config.init_obj("optimizer", torch.optim, params)
    lr_scheduler = None
    if config.get("lr_scheduler"):
        lr_scheduler = config.init_obj("lr_scheduler", torch.optim.lr_scheduler, optimizer)

    extra = {"features": data.features.to_dict(), "normalization": {"mean": mean, "std": std},
             "keywords": list(data.keywords)}
    if tuple(getattr(data, "class_names", ())) != ("unknown",) + tuple(data.keywords):
        extra["class_names"] = list(data.class_names)  # a silence class
    distillation = None
    if ensemble is not None:
        soft = settings.distillation
        distillation = Distillation(ensemble[0].to(device), soft.temperature, soft.alpha, weights)
        extra["teachers"] = list(ensemble[1])
    if finetune or (checkpoint is not None and checkpoint.finetuned_from):
        origin = checkpoint.finetuned_from or {}
        if finetune:
            note = explain(checkpoint)
            if note:
                logger.info(note)
            extra.update(finetune_record(checkpoint, config.resume, float_run_rate(checkpoint),
                                         quantization, pruning))
        else:  # resuming a finetuning run: carry its record on
            extra.update({"finetuned_from": origin, "solutions": checkpoint.solutions})
        distill = parse_finetuning_config(config).distillation
        if distill.enabled:
            teacher = build_teacher(checkpoint, distill, data.keywords, data.features.to_dict()).to(device)
            check_teacher_outputs(teacher, num_classes)
            distillation = Distillation(teacher, distill.temperature, distill.alpha, weights)
            logger.info(f"distillation: temperature {distill.temperature}, alpha {distill.alpha}, "
                        f"teacher {distill.teacher or 'the float model of the checkpoint'}")
    trainer = Trainer(model, criterion, metrics, optimizer, config=config, device=device,
                      data_loader=train_loader, valid_data_loader=valid_loader, lr_scheduler=lr_scheduler,
                      checkpoint_extra=extra, progress=progress, distributed=distributed,
                      ema_decay=settings.ema, distillation=distillation, num_classes=num_classes,
                      stream_validation=_stream_validation(config, data, mean, std, logger),
                      silence=module_metric.silence_class(getattr(data, "class_names", ())))
    trainer.checkpoint_dir = checkpoint_dir
    if trainer.is_writer:
        make_folder(checkpoint_dir)
    if checkpoint is not None and not finetune:
        trainer.resume_checkpoint(config.resume)
    start = trainer.validate() if finetune else None  # the compressed model finetuning starts from
    log = trainer.train()
    if trainer.is_writer and checkpoint_dir == config.save_dir:
        _calibrate_best(config, data, checkpoint_dir / "model_best.pth", logger)
        for line in run_summary(config.save_dir, config.log_dir, trainer.best_epoch, trainer.best_log,
                                finetuned=bool(finetune or (checkpoint is not None and checkpoint.finetuned_from)),
                                start_log=start):
            logger.info(line)
    return log


def _stream_validation(config, data, mean, std, logger):
    """The validation stream's measures for every epoch when ``trainer.monitor`` names one
    (``val_stream_recall_at_target`` or ``val_stream_mean_recall``); None otherwise."""
    monitor = parse_trainer_config(config["trainer"]).monitor.split()
    if len(monitor) != 2 or monitor[1].removeprefix("val_") not in STREAM_METRICS:
        return None
    corpus = getattr(data, "corpus", None)
    if corpus is None:
        raise UserError(f"monitor {monitor[1]} (trainer.monitor or optimization.finetuning.monitor) needs a "
                        f"corpus of audio clips to build the validation stream from; this data loader holds "
                        f"features only: monitor val_balanced_accuracy")
    settings = parse_detector_config(config.get("detector")) or DetectorConfig()
    measure = StreamValidation(corpus, data.features, mean, std, tuple(data.class_names), DetectorSettings(),
                               settings.target_false_alarms_per_hour, settings.stream_hours, settings.seed)
    logger.info(f"monitor: {measure.describe}")
    return measure


def _calibrate_best(config, data, best, logger) -> None:
    """The operating point of model_best.pth on the validation stream, written into it."""
    settings = parse_detector_config(config.get("detector"))
    if settings is None or not best.is_file() or getattr(data, "corpus", None) is None:
        return
    logger.info(f"Calibrating the detector on the validation stream ({settings.stream_hours:g} h of "
                f"non-keyword audio, target {settings.target_false_alarms_per_hour:g} false alarm(s)/h) ...")
    detector = calibrate_checkpoint(best, settings, data.data_dir)
    logger.info(describe_detector(detector))
    if deaf_warning(detector):
        logger.warning(f"warning: {deaf_warning(detector)}")


def run_summary(run: str | os.PathLike, log_dir: str | os.PathLike, best_epoch: int | None,
                best_log: Mapping[str, float] | None, finetuned: bool,
                start_log: Mapping[str, float] | None = None) -> list[str]:

    """The lines train.py ends with: what it wrote, the best epoch's validation scores, and the
    commands a user types next (with the run folder in a shell variable, pasted as printed).
    ``start_log``: the validation scores finetuning started from, to show its false-alarm change."""
    lines = [f"Wrote {run}/ (config.yml, checkpoints) and {log_dir}/ (info.log, tensorboard events)"]
    if best_epoch is None:
        lines.append("No model_best.pth: trainer.monitor is off; use the last checkpoint-epochN.pth")
        return lines
    scores = ", ".join(f"{k[4:]} {best_log[k]:.4f}" for k in
                       ("val_balanced_accuracy", "val_top1", "val_false_alarm_rate") if k in best_log)
    lines.append(f"Best epoch {best_epoch} (model_best.pth), validation: {scores}")
    if start_log:
        rates = [{"false_alarm_rate": log.get("val_false_alarm_rate")} for log in (start_log, best_log)]
        if None not in (rates[0]["false_alarm_rate"], rates[1]["false_alarm_rate"]):
            lines += false_alarm_change(*rates, f"finetuning (start -> best epoch {best_epoch})",
                                        "optimization.finetuning.monitor 'min val_false_alarm_rate' keeps the "
                                        "epoch with the fewest, or compress less")
    var = "F" if finetuned else "R"
    lines += ["Next:", f"{var}={run}", f"python3 test.py -r ${var}/model_best.pth"]
    if finetuned:
        lines.append(f"python3 export.py -r ${var}/model_best.pth -o deploy_out")
    else:
        lines.append(f"python3 quantize.py -r ${var}/model_best.pth")
    return lines
