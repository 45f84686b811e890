"""Rebuilding what a checkpoint describes: the model (with optional quantization and pruning
solutions applied) and the data it was trained on, with the checkpoint's feature parameters and
normalisation statistics (never recomputed on the data being evaluated).

A finetuned checkpoint carries the YAML text of the solutions it was trained under: its weights
only make sense in that fixed-point, pruned form, so they are applied unless the caller gives
other solution files or asks for the checkpoint alone (``use_stored=False``)."""
from __future__ import annotations

import copy
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import yaml

import data_loader.data_loaders as module_data
from configuration.schema import DEFAULT_KEYWORDS, DEFAULT_LOSS, validate_stored_loader
from fixedpoint.folding import fold_batchnorm
from model.loss import loss_by_name
from model.registry import build_model
from optimization.solutions import apply_pruning, apply_quantization, load_pruning, load_quantization
from utils import yaml_reader
from utils.checkpoint import load_checkpoint
from utils.errors import UserError

if TYPE_CHECKING:
    import torch

    from model.registry import KeywordModel
    from utils.checkpoint import Checkpoint

# a solution as a quantization.yml / pruning.yml path, or its content (a StoredSolution from a checkpoint)
SolutionSource = str | os.PathLike | dict
# what data_for_checkpoint builds (the lab's KeywordDataLoader gives either)
CorpusData = module_data.SpeechCommandsDataLoader | module_data.PrecomputedDataLoader


class StoredSolution(dict):
    """A solution's YAML content kept in a checkpoint; ``str()`` says where it came from."""

    def __init__(self, data: dict, label: str) -> None:
        super().__init__(data)
        self.label = label

    def __str__(self) -> str:
        return self.label


def stored_solutions(ckpt: Checkpoint, source: str = "the checkpoint") -> tuple[StoredSolution | None,
                                                                                 StoredSolution | None]:
    """(quantization, pruning) solutions stored in a finetuned checkpoint (None where absent)."""
    stored = ckpt.solutions or {}
    out = []
    for kind in ("quantization", "pruning"):
        text = stored.get(kind)
        if not text:
            out.append(None)
            continue
        try:
            data = yaml_reader.loads(text) if isinstance(text, str) else None
        except yaml.YAMLError as e:
            raise UserError(f"the {kind} solution stored in {source} is not valid YAML "
                            f"({yaml_reader.first_line(e)}); give -q/-p files or --no-stored") from None
        if not isinstance(data, dict):
            raise UserError(f"the {kind} solution stored in {source} is not a mapping; give -q/-p files "
                            f"or --no-stored")
        out.append(StoredSolution(data, f"the {kind} solution stored in {source}"))
    return tuple(out)


def effective_solutions(ckpt: Checkpoint, quantization: SolutionSource | None = None,
                        pruning: SolutionSource | None = None, use_stored: bool = True,
                        source: str = "the checkpoint", announce: Callable[[str], object] | None = print
                        ) -> tuple[SolutionSource | None, SolutionSource | None]:
    """The solutions to apply: the files given, else (with ``use_stored``) those the checkpoint
    carries, announced in one line so the user knows the fixed-point path is the one measured."""
    if not use_stored:
        return quantization, pruning
    stored_q, stored_p = stored_solutions(ckpt, source)
    used = []
    if quantization is None and stored_q is not None:
        quantization = stored_q
        used.append("quantization")
    if pruning is None and stored_p is not None:
        pruning = stored_p
        used.append("pruning")
    if used and announce is not None:
        announce(f"Applying the {' and '.join(used)} solution(s) stored in {source} (the model was "
                 f"finetuned under them); --no-stored evaluates the weights alone")
    return quantization, pruning


def restore_model(checkpoint_path: str | os.PathLike, quantization: SolutionSource | None = None,
                  pruning: SolutionSource | None = None, use_stored: bool = True,
                  announce: Callable[[str], object] | None = print) -> tuple[KeywordModel, Checkpoint]:
    """(model in eval mode, checkpoint dict). ``quantization`` / ``pruning`` are yml paths or
    stored solutions; a finetuned checkpoint's stored solutions fill in those not given. The
    solutions applied are recorded in ``ckpt.applied``."""
    ckpt = load_checkpoint(checkpoint_path)
    model = build_model(ckpt, source=str(checkpoint_path))
    quantization, pruning = effective_solutions(ckpt, quantization, pruning, use_stored, str(checkpoint_path),
                                                announce)
    fold_batchnorm(model)   # evaluation only: the folded model computes the same
    apply_solutions(model, quantization, pruning)
    ckpt.applied = {"quantization": quantization, "pruning": pruning}
    model.eval()
    return model, ckpt


def apply_solutions(model: KeywordModel, quantization: SolutionSource | None = None,
                    pruning: SolutionSource | None = None) -> None:
    """Apply the solutions (paths or stored mappings). With either, batch norm is folded into the
    convs first: a pruned kernel must output zero and a quantized conv feed its relu directly."""
    if quantization or pruning:
        fold_batchnorm(model)
    if pruning:
        apply_pruning(model, load_pruning(pruning, model))
    if quantization:
        apply_quantization(model, load_quantization(quantization, model))


DATA_LOADERS = ("SpeechCommandsDataLoader", "KeywordDataLoader")  # what a checkpoint's config may name


def data_for_checkpoint(ckpt: Checkpoint, data_dir: str | os.PathLike | None = None,
                        progress: bool = True) -> CorpusData:
    """The checkpoint's data loader (optionally on another corpus) with its feature parameters."""
    if not isinstance(ckpt.config.get("data_loader"), dict):
        raise UserError("the checkpoint's config has no data_loader section, so its data cannot be found; "
                        "give a checkpoint saved by train.py")
    cfg = copy.deepcopy(ckpt.config["data_loader"])
    name = str(cfg.get("type", "SpeechCommandsDataLoader"))
    args = dict(cfg.get("args") or {})
    args["features"] = ckpt.features
    if name in DATA_LOADERS:   # the features were checked on load; IA_DATASET ones only by shape
        stored = {k: v for k, v in args.items() if k != "features" or "precomputed" not in v}
        validate_stored_loader(name, stored, "the checkpoint")
    if data_dir is not None:
        args["data_dir"] = str(data_dir)
        args["download"] = None
    args["progress"] = progress
    cls = getattr(module_data, name, None) if name in DATA_LOADERS else None
    if cls is None:
        raise UserError(f"the checkpoint's data loader '{cfg.get('type')}' is not known to this version")
    keywords = args.get("keywords", DEFAULT_KEYWORDS)
    if ckpt.keywords is not None and list(keywords if isinstance(keywords, (list, tuple)) else [keywords]) \
            != list(ckpt.keywords):
        raise UserError(f"the checkpoint's config names keywords {keywords!r} but its model was trained for "
                        f"{list(ckpt.keywords)}; give a checkpoint saved by train.py")
    try:
        return cls(**args)
    except TypeError as e:
        raise UserError(f"the checkpoint's data_loader.args do not fit {cls.__name__}: {e}") from None


def loss_of(ckpt: Checkpoint) -> Callable[..., torch.Tensor]:
    """The loss the checkpoint's config names (the schema's default when it names none)."""
    return loss_by_name(ckpt.config.get("loss", DEFAULT_LOSS), "the checkpoint's loss")


def normalization_of(ckpt: Checkpoint) -> tuple[torch.Tensor, torch.Tensor]:

    norm = ckpt.normalization
    return norm["mean"], norm["std"]
