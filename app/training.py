"""What train.py does: build everything from the config, then train, resume or finetune.

Finetuning (``-r CKPT -q ... -p ...``, see trainer/finetuning.py) starts a new run from the
checkpoint's weights with a fresh optimizer; train.py builds its config with
``finetune_config`` before the run folder is written, so the run's config.yml says what ran.
"""
import functools

import torch

import data_loader.data_loaders as module_data
import model.loss as module_loss
import model.metric as module_metric
from model.registry import build_model, make_model
from trainer.distributed import per_rank_batch_size
from trainer.finetuning import (build_teacher, check_teacher_outputs, explain, finetune_record,
                                finetuning_settings, float_run_rate)
from trainer.trainer import Distillation, Trainer
from utils import atomic
from utils.errors import UserError
from app.restore import apply_solutions, normalization_of, stored_solutions
from utils.seeding import prepare_device, seed_everything


def _ema_decay(config):
    decay = config["trainer"].get("ema")
    if decay is None or decay is False:
        return None
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 < decay < 1:
        raise UserError(f"trainer.ema must be null or a decay between 0 and 1 (e.g. 0.995), found {decay!r}")
    return float(decay)


def _restarts(config, checkpoint):
    restarts = config["trainer"].get("restarts", 1)
    if isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 1:
        raise UserError(f"trainer.restarts must be an integer >= 1, found {restarts!r}")
    return 1 if checkpoint is not None else restarts  # resuming and finetuning continue one model


def _winner(results, mode):
    """Index of the restart whose monitored best is best (the first one on a tie)."""
    pick = max if mode == "max" else min
    best = pick(r[1] for r in results)
    return next(i for i, r in enumerate(results) if r[1] == best)


def run_training(config, checkpoint=None, quantization=None, pruning=None, progress=True, distributed=None):
    """Train from scratch (no checkpoint), resume (checkpoint only) or finetune (checkpoint with a
    quantization and/or pruning solution). A resumed finetuning run applies the solutions its
    checkpoint carries. Returns the last epoch's log.

    ``trainer.restarts: K`` trains K initialisations (seeds seed, seed + 1000, ...; each in
    ``restart<k>/`` of the run folder) and keeps the one whose monitored validation score is best
    as the run's ``model_best.pth``: on a corpus with a handful of speakers per keyword, which
    solution an initialisation lands in decides how well an unseen speaker is recognised, and the
    validation speakers say which one generalised."""
    finetune = checkpoint is not None and bool(quantization or pruning)
    if (quantization or pruning) and checkpoint is None:
        raise UserError("-q/-p finetune a trained model: give its checkpoint with -r as well")
    if checkpoint is not None and not finetune:  # resuming: the solutions it was trained under
        quantization, pruning = stored_solutions(checkpoint)
    seed = int(config.get("seed", 0))
    restarts = _restarts(config, checkpoint)
    rank, world = (distributed.rank, distributed.world_size) if distributed is not None else (0, 1)
    # Each rank draws its own dropout masks; DDP copies rank 0's initial weights to the others.
    seed_everything(seed + rank, bool(config.get("deterministic", True)))
    logger = config.get_logger("train")

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
    if restarts == 1:
        return _train_one(config, data, mean, std, checkpoint, finetune, quantization, pruning, progress,
                          distributed, logger, seed, config.save_dir)[0]
    results = []
    for k in range(restarts):
        seed_k = seed + 1000 * k
        logger.info(f"restart {k + 1}/{restarts}: seed {seed_k}")
        seed_everything(seed_k + rank, bool(config.get("deterministic", True)))
        data.seed = seed_k
        results.append(_train_one(config, data, mean, std, None, False, None, None, progress, distributed,
                                  logger, seed_k, config.save_dir / f"restart{k}"))
    won = _winner(results, results[0][2])
    log, best, mode = results[won]
    if distributed is None or distributed.is_main:
        winner = config.save_dir / f"restart{won}" / "model_best.pth"
        if winner.is_file():
            atomic.copy_file(winner, config.save_dir / "model_best.pth")
    logger.info(f"restarts: monitored best {[round(r[1], 4) for r in results]}; restart {won} "
                f"(seed {seed + 1000 * won}) is the run's model_best.pth")
    return log


def _train_one(config, data, mean, std, checkpoint, finetune, quantization, pruning, progress, distributed,
               logger, seed, checkpoint_dir):
    """One training (or resume, or finetuning) into ``checkpoint_dir``: (last log, monitored best,
    monitor mode)."""
    rank, world = (distributed.rank, distributed.world_size) if distributed is not None else (0, 1)
    if checkpoint is not None:
        model = build_model(checkpoint, source=str(config.resume))
    else:
        model = make_model(config["arch"]["type"], config["arch"].get("args"), data.features.to_dict())
    num_classes = int((config["arch"].get("args") or {}).get("num_classes", 4))
    apply_solutions(model, quantization, pruning)
    logger.info(model)

    train_loader = data.train_loader(mean, std, rank=rank, world_size=world)
    valid_loader = data.eval_loader("validation", mean, std, rank=rank, world_size=world)

    if distributed is not None:  # one device per rank; n_gpu applies to a single process only
        device = distributed.device
        model = distributed.wrap(model.to(device))
    else:
        device, device_ids = prepare_device(int(config.get("n_gpu", 0)))
        model = model.to(device)
        if len(device_ids) > 1:
            model = torch.nn.DataParallel(model, device_ids=device_ids)

    loss_name = config["loss"]
    criterion = module_loss.loss_by_name(loss_name)
    weights = module_loss.class_weights(config["trainer"].get("class_weights"), data.split("train").labels,
                                        num_classes)
    if weights is not None:
        criterion = functools.partial(criterion, weight=weights.to(device))
        criterion.__name__ = loss_name
        logger.info(f"class weights: {[round(float(w), 3) for w in weights]}")
    metrics = [module_metric.metric_by_name(name, "config metric") for name in config["metrics"]]

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = config.init_obj("optimizer", torch.optim, params)
    lr_scheduler = None
    if config.get("lr_scheduler"):
        lr_scheduler = config.init_obj("lr_scheduler", torch.optim.lr_scheduler, optimizer)

    extra = {"features": data.features.to_dict(), "normalization": {"mean": mean, "std": std},
             "keywords": list(data.keywords)}
    distillation = None
    if finetune or (checkpoint is not None and checkpoint.get("finetuned_from")):
        origin = checkpoint.get("finetuned_from") or {}
        if finetune:
            note = explain(checkpoint)
            if note:
                logger.info(note)
            extra.update(finetune_record(checkpoint, config.resume, float_run_rate(checkpoint),
                                         quantization, pruning))
        else:  # resuming a finetuning run: carry its record on
            extra.update({"finetuned_from": origin, "solutions": checkpoint.get("solutions")})
        _, _, distill = finetuning_settings(config)
        if distill["enabled"]:
            teacher = build_teacher(checkpoint, distill, data.keywords, data.features.to_dict()).to(device)
            check_teacher_outputs(teacher, num_classes)
            distillation = Distillation(teacher, distill["temperature"], distill["alpha"], weights)
            logger.info(f"distillation: temperature {distill['temperature']}, alpha {distill['alpha']}, "
                        f"teacher {distill['teacher'] or 'the float model of the checkpoint'}")
    trainer = Trainer(model, criterion, metrics, optimizer, config=config, device=device,
                      data_loader=train_loader, valid_data_loader=valid_loader, lr_scheduler=lr_scheduler,
                      checkpoint_extra=extra, progress=progress, distributed=distributed,
                      ema_decay=_ema_decay(config), distillation=distillation, num_classes=num_classes)
    trainer.checkpoint_dir = checkpoint_dir
    if trainer.is_writer:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
    if checkpoint is not None and not finetune:
        trainer.resume_checkpoint(config.resume)
    return trainer.train(), trainer.mnt_best, trainer.mnt_mode
