"""Analytical cost model of a (pruned, quantized) network: MACs, parameters and memory.

Everything is counted from the layers' shapes, pruning masks and fixed-point formats; nothing is
timed. The geometry (output positions of every layer) comes from one forward pass with hooks on a
zero input, so the model is not hard-coded here.

Pruning is counted structurally, as a deployed network would be built: a pruned kernel removes its
own weights and bias *and* the inputs of the next layer that only read it (a pruned conv filter
removes the next conv's input channel or its block of features in a linear layer, a pruned neuron
the next layer's input column), together with the MACs that used them. The layers and which feeds
which come from the model's description (``fixedpoint/graph.py``).

Units: sizes are in bits; ``format_profile`` shows them as kB with kB = 1000 bytes and
byte = 8 bits (the lab printed kilobits and called them "kB").
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fixedpoint.graph import describe, output_shapes
from fixedpoint.pruning_rules import input_masks as graph_input_masks

if TYPE_CHECKING:
    import torch

    from model.registry import KeywordModel

FLOAT_BITS = 32  # storage of a group left in floating point (0 bits in LayerQuantization)


@dataclass(frozen=True)
class LayerProfile:
    name: str
    kind: str                 # "Conv" or "Linear"
    kernels: int              # output kernels (filters / neurons) in the layer
    live_kernels: int         # not pruned
    live_inputs: int          # input channels (conv) or features (linear) still fed by live kernels
    macs: int                 # per classification
    parameters: int           # remaining weights + biases
    weight_bits: int          # parameters at bits_weights (float = 32)
    activation_values: int    # outputs of the layer: live kernels x output positions
    activation_bits: int      # activation values at bits_outputs (float = 32)


@dataclass(frozen=True)
class Profile:
    layers: tuple

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def parameters(self) -> int:
        return sum(layer.parameters for layer in self.layers)

    @property
    def weight_bits(self) -> int:
        return sum(layer.weight_bits for layer in self.layers)

    @property
    def activation_values(self) -> int:
        return sum(layer.activation_values for layer in self.layers)

    @property
    def activation_bits(self) -> int:
        return sum(layer.activation_bits for layer in self.layers)


def input_masks(model: KeywordModel) -> dict[str, torch.Tensor]:
    """Name -> bool tensor over each layer's inputs that live kernels produce (see
    ``fixedpoint.pruning_rules.input_masks``)."""
    return graph_input_masks(describe(model))


def profile_model(model: KeywordModel, input_shape: Sequence[int] | None = None) -> Profile:
    """Cost of one classification of an input of ``input_shape`` (channels x frames x
    coefficients; by default the model's own). Batch norm is counted folded into its conv, as
    deployed. A depthwise kernel reads one channel, so its weights do not scale with the inputs."""
    graph = describe(model)
    shapes = output_shapes(model, graph, input_shape)
    inputs = graph_input_masks(graph)
    profiles = []
    for block in graph.blocks:
        name, layer = block.name, block.layer
        q = layer.quantization
        live_out = int((layer.kernel_mask != 0).sum())
        live_in = 1 if block.kind == "depthwise" else int(inputs[name].sum())
        kernel_area = math.prod(layer.weight.shape[2:])
        positions = math.prod(shapes[name][2:])
        weights = live_out * live_in * kernel_area
        parameters = weights + (live_out if layer.bias is not None else 0)
        activations = live_out * positions
        profiles.append(LayerProfile(
            name=name,
            kind="Linear" if block.kind == "linear" else "Conv",
            kernels=layer.weight.shape[0],
            live_kernels=live_out,
            live_inputs=int(inputs[name].sum()),
            macs=weights * positions,
            parameters=parameters,
            weight_bits=weight_memory_bits(parameters, q.bits_weights),
            activation_values=activations,
            activation_bits=activations * (q.bits_outputs or FLOAT_BITS),
        ))
    return Profile(layers=tuple(profiles))


def weight_memory_bits(parameters: int, bits_weights: int) -> int:
    """Storage of ``parameters`` weights and biases at ``bits_weights`` (0 = float32)."""
    return parameters * (bits_weights or FLOAT_BITS)


def _kilobytes(bits) -> str:
    return f"{bits / 8 / 1000:.1f} kB ({bits} bits)"


def format_profile(profile: Profile, accuracy: float | dict[str, float] | None = None) -> str:

    """The lab's profile lines in correct units (kB = 1000 bytes); ``accuracy`` is a top-1
    fraction or a dict of test metrics (top1, balanced_accuracy, false_alarm_rate)."""
    lines = [
        f"MACs/classification: {profile.macs}",
        f"Number of Parameters: {profile.parameters}",
        "Model Size:",
        f"  - Weights: {_kilobytes(profile.weight_bits)}",
        f"  - Activations: {_kilobytes(profile.activation_bits)}",
    ]
    if isinstance(accuracy, dict):
        lines.append(f"Accuracy: {100 * accuracy['top1']:.2f}%")
        lines.append(f"Balanced accuracy: {100 * accuracy['balanced_accuracy']:.2f}%")
        lines.append(f"False alarms: {100 * accuracy['false_alarm_rate']:.2f}% of non-keyword clips taken for a keyword")
    elif accuracy is not None:
        lines.append(f"Accuracy: {100 * accuracy:.2f}%")
    return "\n".join(lines)
