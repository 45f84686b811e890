"""Post-training minimum-weight kernel pruning within an accuracy margin (writes pruning.yml)."""
import utils.start_up  # noqa: F401  (before the slow imports: Ctrl-C at start-up is one line, exit 130)
import utils.stdlib_profile  # noqa: F401  (first: keeps our profile.py from shadowing the stdlib's)
import argparse
from app.cli import CPU_DEVICE, entry, script_parser
from app.workflow import run_pruning


def parser() -> argparse.ArgumentParser:
    return script_parser("Prune kernels of a trained keyword spotter",
                         resume="checkpoint to prune (model_best.pth)",
                         config="config whose optimization.pruning to use (default: the checkpoint's)",
                         quantization="quantization.yml: prune the quantized model",
                         device=CPU_DEVICE,
                         output="where to write (default: pruning.yml next to the checkpoint)")


def run(args: argparse.Namespace) -> None:
    print(f"Loading checkpoint: {args.resume} ...")
    run_pruning(args.resume, args.quantization, args.config, args.output)


main = entry(parser, run)

if __name__ == "__main__":
    main()
