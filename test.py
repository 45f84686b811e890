"""Evaluate a checkpoint on the test split: confusion matrix, per-sample metrics, per-class scores."""
import utils.stdlib_profile  # noqa: F401  (first: keeps our profile.py from shadowing the stdlib's)
from utils.torch_startup import import_torch_without_compiler
import_torch_without_compiler()  # before anything imports torch: leaves out what only torch.compile needs
import argparse

from app.testing import format_report, run_test, save_report
from utils.cli import add_device_option, use_devices
from utils.allocator import reuse_freed_memory
from utils.errors import exit_on_user_error
from utils.fast_exit import run_and_exit


@exit_on_user_error
def main():
    reuse_freed_memory()
    parser = argparse.ArgumentParser(description="Test a trained keyword spotter")
    parser.add_argument("-r", "--resume", required=True, help="checkpoint to test (model_best.pth)")
    parser.add_argument("-q", "--quantization", default=None, help="quantization.yml to apply")
    parser.add_argument("-p", "--pruning", default=None, help="pruning.yml to apply")
    parser.add_argument("--no-stored", action="store_true",
                        help="ignore the solutions a finetuned checkpoint carries (evaluate its weights alone)")
    add_device_option(parser, "; this step runs on the CPU")
    parser.add_argument("--data-dir", default=None, help="evaluate another corpus (its testing_list.txt)")
    parser.add_argument("--all", action="store_true", help="with --data-dir: every clip of the corpus")
    args = parser.parse_args()
    use_devices(args)
    print(f"Loading checkpoint: {args.resume} ...")
    result = run_test(args.resume, args.quantization, args.pruning, args.data_dir, args.all,
                      use_stored=not args.no_stored)
    print(f"Evaluated: {result['evaluated']}")
    print(format_report(result))
    if args.data_dir is None:
        report = save_report(result, args.resume, args.quantization, args.pruning)
        print(f"Wrote {report} and {report.with_suffix('.png')} (confusion matrix)")
    else:
        print("Nothing written (another corpus: the report beside the checkpoint is for its own test split)")


if __name__ == "__main__":
    run_and_exit(main)
