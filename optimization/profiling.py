"""Analytical cost model of a (pruned, quantized) network: MACs, parameters and memory.

Everything is counted from the layers' shapes, pruning masks and fixed-point formats; nothing is
timed. The geometry (output positions of every layer) comes from one forward pass with hooks on a
zero input, so the model is not hard-coded here.

Pruning is counted structurally, as a deployed network would be built: a pruned kernel removes its
own weights and bias *and* the inputs of the next layer that only read it (a pruned conv1 filter
removes conv2's input channel, a pruned conv2 filter its block of features in fc3, a pruned fc3
neuron fc4's input column), together with the MACs that used them.

Units: sizes are in bits; ``format_profile`` shows them as kB with kB = 1000 bytes and
byte = 8 bits (the lab printed kilobits and called them "kB").
"""
import math
from dataclasses import dataclass

import torch

from optimization.layers import fixed_point_layers

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
    def macs(self):
        return sum(layer.macs for layer in self.layers)

    @property
    def parameters(self):
        return sum(layer.parameters for layer in self.layers)

    @property
    def weight_bits(self):
        return sum(layer.weight_bits for layer in self.layers)

    @property
    def activation_values(self):
        return sum(layer.activation_values for layer in self.layers)

    @property
    def activation_bits(self):
        return sum(layer.activation_bits for layer in self.layers)


def input_masks(model):
    """Name -> bool tensor over each layer's inputs (channels or features): True where the input is
    produced by a live kernel of the previous layer. A linear layer after a conv reads each channel
    as a contiguous block (``flatten`` is channel-major), so a channel's mask is repeated over it."""
    masks = {}
    prev = None
    for name, layer in fixed_point_layers(model).items():
        n_in = layer.weight.shape[1]
        if prev is None:
            masks[name] = torch.ones(n_in, dtype=torch.bool)
        else:
            live = prev.kernel_mask != 0
            if n_in % live.numel():
                raise ValueError(f"{name} has {n_in} inputs, not a multiple of the "
                                 f"{live.numel()} kernels of the layer before it")
            masks[name] = live.repeat_interleave(n_in // live.numel())
        prev = layer
    return masks


def _output_shapes(model, input_shape):
    """Name -> output shape of every fixed-point layer for one input of ``input_shape``."""
    layers = fixed_point_layers(model)
    shapes = {}
    hooks = [layer.register_forward_hook(
        lambda module, args, out, name=name: shapes.__setitem__(name, tuple(out.shape)))
        for name, layer in layers.items()]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1,) + tuple(input_shape)))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return shapes


def profile_model(model, input_shape=(1, 100, 13)):
    """Cost of one classification of an input of ``input_shape`` (channels x frames x coefficients)."""
    shapes = _output_shapes(model, input_shape)
    inputs = input_masks(model)
    profiles = []
    for name, layer in fixed_point_layers(model).items():
        q = layer.quantization
        live_out = int((layer.kernel_mask != 0).sum())
        live_in = int(inputs[name].sum())
        kernel_area = math.prod(layer.weight.shape[2:])
        positions = math.prod(shapes[name][2:])
        weights = live_out * live_in * kernel_area
        parameters = weights + (live_out if layer.bias is not None else 0)
        activations = live_out * positions
        profiles.append(LayerProfile(
            name=name,
            kind="Conv" if layer.weight.dim() > 2 else "Linear",
            kernels=layer.weight.shape[0],
            live_kernels=live_out,
            live_inputs=live_in,
            macs=weights * positions,
            parameters=parameters,
            weight_bits=parameters * (q.bits_weights or FLOAT_BITS),
            activation_values=activations,
            activation_bits=activations * (q.bits_outputs or FLOAT_BITS),
        ))
    return Profile(layers=tuple(profiles))


def _kilobytes(bits):
    return f"{bits / 8 / 1000:.1f} kB ({bits} bits)"


def format_profile(profile, accuracy=None):
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
        lines.append(f"False alarms: {100 * accuracy['false_alarm_rate']:.2f}% of background clips")
    elif accuracy is not None:
        lines.append(f"Accuracy: {100 * accuracy:.2f}%")
    return "\n".join(lines)
