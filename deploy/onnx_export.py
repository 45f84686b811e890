"""ONNX export of the float network's log-probabilities, for runtimes other than our C code.

Uses the TorchScript exporter (``dynamo=False``): the dynamo exporter needs ``onnxscript``, which
the project does not depend on. Opset 17, a dynamic batch axis, input ``features``
(N x the model's input shape), output ``log_probs`` (N x classes). Fixed-point simulation is not exported
(ONNX has no matching rounding/wrap semantics); use the integer engine or the C export for that.
"""
from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import onnxruntime
import torch

from fixedpoint.layers import fixed_point_layers
from utils.atomic import write_bytes
from utils.errors import UserError

if TYPE_CHECKING:
    from model.registry import KeywordModel

OPSET = 17


def export_onnx(model: KeywordModel, path: str | os.PathLike, input_shape: Sequence[int] | None = None) -> None:
    """Write the eval-mode float ``model`` (masked or compact) as ONNX to ``path``, atomically."""
    quantized = [name for name, layer in fixed_point_layers(model).items() if layer.quantization.enabled]
    if quantized:
        raise UserError(f"ONNX export covers the float model, but {', '.join(quantized)} "
                        f"are quantized; export without a quantization solution, or use the C export")
    buffer = io.BytesIO()
    was_training = model.training
    try:
        model.eval()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
            torch.onnx.export(model, (torch.zeros((1,) + tuple(input_shape or model.input_shape)),), buffer,
                              dynamo=False, opset_version=OPSET,
                              input_names=["features"], output_names=["log_probs"],
                              dynamic_axes={"features": {0: "batch"}, "log_probs": {0: "batch"}})
    finally:
        model.train(was_training)
    write_bytes(path, buffer.getvalue())


def check_onnx(path: str | os.PathLike, model: KeywordModel, inputs: torch.Tensor) -> float:

    """Max absolute difference between onnxruntime's log-probabilities for ``inputs`` and the
    eval-mode ``model``'s."""
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            expected = model(inputs).numpy()
    finally:
        model.train(was_training)
    got = session.run(["log_probs"], {"features": inputs.numpy().astype(np.float32)})[0]
    return float(np.abs(got - expected).max())
