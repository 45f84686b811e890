"""Data-pipeline overhead of training: one epoch of our training loop against the compute floor.

The floor is the same number of forward and backward passes (same batch size, same optimizer) on
tensors made beforehand, with no batching, augmentation or feature work. Also reports the cost of
augmentation (the same loop with augmentation off) and of fixed-point training (finetuning): the
same model with 4-bit weights and 8-bit activations (formats from its ranges, 32-bit accumulators)
against its float epoch, both without augmentation; and of the memory layout: the float epoch with
the model in NCHW against channels-last, the layout every model is built in (model.registry).
All numbers come from one run on this machine.

    python3 bench/train_throughput.py [--data-dir ../shared/data/kws_corpus] [--epochs 3]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import utils.stdlib_profile  # noqa: E402,F401

import argparse  # noqa: E402
import copy  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
import yaml  # noqa: E402

from data_loader.data_loaders import SpeechCommandsDataLoader  # noqa: E402
from fixedpoint.fixed_point import Format  # noqa: E402
from fixedpoint.layers import LayerQuantization, fixed_point_layers  # noqa: E402
from model.loss import nll_loss  # noqa: E402
from model.registry import make_model  # noqa: E402
from optimization.range_analysis import collect_ranges  # noqa: E402


def interleaved_best(variants, epochs):
    """Best epoch time of each variant, running them in turn (round robin) so that a change in
    machine load hits every variant alike. ``variants``: name -> (model, optimizer, batches_fn)."""
    best = {name: float("inf") for name in variants}
    for epoch in range(epochs):
        for name, (model, optimizer, batches_fn) in variants.items():
            model.train()
            start = time.perf_counter()
            for x, y in batches_fn(epoch):
                optimizer.zero_grad(set_to_none=True)
                nll_loss(model(x), y).backward()
                optimizer.step()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def fixed_point_copy(model, inputs, bits_weights=4, bits_activations=8, bits_accumulator=32):
    """A copy of ``model`` in fixed point, formats from its ranges on ``inputs``, as finetuning
    trains it."""
    fixed = copy.deepcopy(model)
    ranges = collect_ranges(fixed, inputs)
    for name, layer in fixed_point_layers(fixed).items():
        r = ranges[name]
        layer.quantization = LayerQuantization.from_formats(
            Format.covering(bits_activations, r["inputs_absmax"]), Format.covering(bits_weights, r["weights_absmax"]),
            Format.covering(bits_activations, r["outputs_absmax"]), bits_accumulator)
    return fixed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config_lenet5_keywords.yml")
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "kws_corpus"),
                        help="corpus (default: the shared real corpus beside the project)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--bs", type=int, default=None, help="batch size (default: the config's)")
    args = parser.parse_args()
    cfg = yaml.safe_load(open(args.config))["data_loader"]["args"]
    cfg.update(data_dir=args.data_dir, download=None)
    if args.bs:
        cfg["batch_size"] = args.bs
    SpeechCommandsDataLoader(**cfg).split("train")  # build the cache if needed
    data = SpeechCommandsDataLoader(**cfg)
    start = time.perf_counter()
    clips = sum(len(data.split(s)) for s in ("train", "validation", "test"))
    cache_seconds = time.perf_counter() - start
    mean, std = data.normalization()
    torch.manual_seed(0)

    def lenet5():
        return make_model("KeywordLeNet5Clone", None, cfg.get("features"))

    def setup(batches_fn, model=None):
        model = model or lenet5()
        return model, torch.optim.Adam(model.parameters(), lr=1e-3), batches_fn

    ours = data.train_loader(mean, std)
    plain_data = SpeechCommandsDataLoader(**{**cfg, "augment": {"enabled": False}})
    plain = plain_data.train_loader(mean, std)
    n, bs = ours.n_samples, ours.batch_size
    x = torch.randn(n, 1, 100, 13)
    y = torch.randint(0, 4, (n,))
    premade = [(x[i:i + bs], y[i:i + bs]) for i in range(0, n, bs)]

    def epoch_of(loader):
        def batches(epoch):
            loader.set_epoch(epoch)
            return iter(loader)
        return batches
    float_model = lenet5()
    fixed_model = fixed_point_copy(float_model, plain.inputs[:2048])
    nchw_model = copy.deepcopy(float_model).to(memory_format=torch.contiguous_format)
    best = interleaved_best({"floor": setup(lambda e: premade), "ours": setup(epoch_of(ours)),
                             "plain": setup(epoch_of(plain), float_model),
                             "fixed": setup(epoch_of(plain), fixed_model),
                             "nchw": setup(epoch_of(plain), nchw_model)}, args.epochs)
    floor, t_ours, t_plain, t_fixed = best["floor"], best["ours"], best["plain"], best["fixed"]
    print(f"{n} training clips, batch {bs}, torch threads {torch.get_num_threads()}, best of {args.epochs} interleaved epochs")
    print(f"compute floor (pre-made tensors): {t_floor_fmt(floor, n)}")
    print(f"our loop, augmentation on:        {t_floor_fmt(t_ours, n)}")
    print(f"our loop, augmentation off:       {t_floor_fmt(t_plain, n)}")
    print(f"fixed point (w4/a8), aug. off:    {t_floor_fmt(t_fixed, n)}")
    print(f"feature cache load: {cache_seconds:.3f} s for {clips} clips ({10000 * cache_seconds / clips:.2f} s per 10k)")
    print(f"data pipeline overhead: {100 * (t_ours / floor - 1):.1f}% (augmentation on), "
          f"{100 * (t_plain / floor - 1):.1f}% (off); augmented/plain epoch ratio {t_ours / t_plain:.2f}")
    print(f"float, NCHW layout, aug. off:      {t_floor_fmt(best['nchw'], n)}")
    print(f"fixed-point / float epoch of the same model: {t_fixed / t_plain:.2f}")
    print(f"NCHW / channels-last float epoch: {best['nchw'] / t_plain:.2f}")


def t_floor_fmt(seconds, n):
    return f"{seconds:.3f} s/epoch ({n / seconds:,.0f} samples/s)"


if __name__ == "__main__":
    main()
