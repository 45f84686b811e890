"""Network statistics: MACs per classification, parameters, weight and activation memory, accuracy."""
import utils.start_up  # noqa: F401  (before the slow imports: Ctrl-C at start-up is one line, exit 130)
import utils.stdlib_profile  # noqa: F401  (first: keeps this file from shadowing the stdlib's profile)

from app.workflow import run_profile
from utils.cli import ArgumentParser, add_device_option, use_devices
from utils.allocator import reuse_freed_memory
from utils.errors import exit_on_user_error


@exit_on_user_error
def main():
    reuse_freed_memory()
    parser = ArgumentParser(description="Profile a (quantized, pruned) keyword spotter")
    parser.add_argument("-r", "--resume", required=True, help="checkpoint (model_best.pth)")
    parser.add_argument("-q", "--quantization", default=None, help="quantization.yml to apply")
    parser.add_argument("-p", "--pruning", default=None, help="pruning.yml to apply")
    parser.add_argument("--no-stored", action="store_true",
                        help="ignore the solutions a finetuned checkpoint carries (evaluate its weights alone)")
    add_device_option(parser, "; this step runs on the CPU")
    args = parser.parse_args()
    use_devices(args)
    print(f"Loading checkpoint: {args.resume} ...")
    _, text = run_profile(args.resume, args.quantization, args.pruning, use_stored=not args.no_stored)
    print(text)


if __name__ == "__main__":
    main()
