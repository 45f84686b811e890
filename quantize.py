"""Post-training dynamic fixed-point quantization within an accuracy margin (writes quantization.yml)."""
import utils.start_up  # noqa: F401  (before the slow imports: Ctrl-C at start-up is one line, exit 130)
import utils.stdlib_profile  # noqa: F401  (first: keeps our profile.py from shadowing the stdlib's)
import argparse
from app.cli import CPU_DEVICE, entry, script_parser
from app.workflow import run_quantization


def parser() -> argparse.ArgumentParser:
    parser = script_parser("Quantize a trained keyword spotter (Ristretto-style)",
                           resume="checkpoint to quantize (model_best.pth)",
                           config="config whose optimization.quantization to use (default: the checkpoint's)",
                           pruning="pruning.yml: quantize the pruned model",
                           output="where to write (default: quantization.yml next to the checkpoint)",
                           device=CPU_DEVICE)
    parser.add_argument("--per-layer", action="store_true", help="then lower each layer's weights separately")
    return parser


def run(args: argparse.Namespace) -> None:
    print(f"Loading checkpoint: {args.resume} ...")
    run_quantization(args.resume, args.per_layer, args.pruning, args.config, args.output)


main = entry(parser, run)

if __name__ == "__main__":
    main()
