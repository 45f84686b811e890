"""Network statistics: MACs per classification, parameters, weight and activation memory, accuracy."""
import utils.start_up  # noqa: F401  (before the slow imports: Ctrl-C at start-up is one line, exit 130)
import utils.stdlib_profile  # noqa: F401  (first: keeps this file from shadowing the stdlib's profile)
import argparse
from app.cli import CPU_DEVICE, NO_STORED, entry, script_parser
from app.workflow import next_after_evaluation, run_profile


def parser() -> argparse.ArgumentParser:
    return script_parser("Profile a (quantized, pruned) keyword spotter", resume="checkpoint (model_best.pth)",
                         quantization="quantization.yml to apply", pruning="pruning.yml to apply",
                         no_stored=NO_STORED, device=CPU_DEVICE)


def run(args: argparse.Namespace) -> None:
    print(f"Loading checkpoint: {args.resume} ...")
    _, text = run_profile(args.resume, args.quantization, args.pruning, use_stored=not args.no_stored)
    print(text)
    print("Nothing written (profile.py only prints)")
    print(next_after_evaluation(args.resume, args.quantization, args.pruning))


main = entry(parser, run)

if __name__ == "__main__":
    main()
