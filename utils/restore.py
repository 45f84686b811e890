"""Rebuilding what a checkpoint describes: the model (with optional quantization and pruning
solutions applied) and the data it was trained on, with the checkpoint's feature parameters and
normalisation statistics (never recomputed on the data being evaluated)."""
import copy

import data_loader.data_loaders as module_data
from utils.checkpoint import build_model, load_checkpoint
from utils.errors import UserError


def restore_model(checkpoint_path, quantization=None, pruning=None):
    """(model in eval mode, checkpoint dict). ``quantization`` / ``pruning`` are yml paths."""
    ckpt = load_checkpoint(checkpoint_path)
    model = build_model(ckpt, source=str(checkpoint_path))
    apply_solutions(model, quantization, pruning)
    model.eval()
    return model, ckpt


def apply_solutions(model, quantization=None, pruning=None):
    from optimization.solutions import apply_pruning, apply_quantization, load_pruning, load_quantization
    if pruning:
        apply_pruning(model, load_pruning(pruning, model))
    if quantization:
        apply_quantization(model, load_quantization(quantization, model))


def data_for_checkpoint(ckpt, data_dir=None, progress=True):
    """The checkpoint's data loader (optionally on another corpus) with its feature parameters."""
    if not isinstance(ckpt["config"].get("data_loader"), dict):
        raise UserError("the checkpoint's config has no data_loader section, so its data cannot be found; "
                        "give a checkpoint saved by train.py")
    cfg = copy.deepcopy(ckpt["config"]["data_loader"])
    args = dict(cfg.get("args") or {})
    args["features"] = ckpt["features"]
    if data_dir is not None:
        args["data_dir"] = str(data_dir)
        args["download"] = None
    args["progress"] = progress
    cls = getattr(module_data, str(cfg.get("type", "SpeechCommandsDataLoader")), None)
    if cls is not module_data.SpeechCommandsDataLoader:
        raise UserError(f"the checkpoint's data loader '{cfg.get('type')}' is not known to this version")
    keywords = args.get("keywords", ("one", "two", "three"))
    if ckpt.get("keywords") is not None and list(keywords if isinstance(keywords, (list, tuple)) else [keywords]) \
            != list(ckpt["keywords"]):
        raise UserError(f"the checkpoint's config names keywords {keywords!r} but its model was trained for "
                        f"{list(ckpt['keywords'])}; give a checkpoint saved by train.py")
    try:
        return cls(**args)
    except TypeError as e:
        raise UserError(f"the checkpoint's data_loader.args do not fit {cls.__name__}: {e}") from None


def normalization_of(ckpt):
    norm = ckpt["normalization"]
    return norm["mean"], norm["std"]
