"""PrefixReuse: repeated evaluations rerun only the blocks from the first one that changed, with
the same outputs as running the whole model."""
from dataclasses import replace

import torch

from fixedpoint.layers import LayerQuantization
from model.model import KeywordLeNet5Clone
from optimization.evaluations import PrefixReuse


def _q(bits_w, bits_a):
    return LayerQuantization(bits_inputs=bits_a, bits_weights=bits_w, bits_accumulator=32 if bits_a and bits_w else 0,
                             bits_outputs=bits_a, il_inputs=3, il_weights=0, il_outputs=3)


def test_reuse_gives_the_whole_models_outputs_and_skips_unchanged_blocks():
    torch.manual_seed(0)
    model = KeywordLeNet5Clone(dropout=0.5).eval()
    batches = [torch.randn(n, 1, 100, 13) * 3 for n in (32, 32, 7)]
    calls = []
    model.conv1.register_forward_pre_hook(lambda m, args: calls.append("conv1"))
    reuse = PrefixReuse()
    steps = [{}, {"fc3": _q(4, 0), "fc4": _q(4, 0)}, {"fc3": _q(2, 0)}, {"conv2": _q(8, 8)},
             {"fc4": _q(2, 8)}, {"conv1": _q(8, 8)}]
    for i, change in enumerate(steps):
        for name, q in change.items():
            getattr(model, name).quantization = q
        if i == 4:
            model.fc3.prune_kernels([5])  # a pruned kernel changes fc3's state too
        calls.clear()
        with torch.no_grad():
            evaluation = reuse.bind(model).eval()  # once per evaluation, then batch after batch
            reused = [evaluation(x) for x in batches]
            whole = [model(x) for x in batches]
        assert all(torch.equal(a, b) for a, b in zip(reused, whole)), f"step {i}"
        # conv1 runs once per batch for the whole model, and again for the reuse only when it changed
        assert len(calls) == len(batches) * (2 if i in (0, 5) else 1), f"step {i}: {calls}"
    assert reuse.start == 0  # conv1 changed last
    model.fc4.quantization = replace(model.fc4.quantization, il_outputs=2)
    reuse.bind(model)
    assert reuse.start == 3
