"""Post-training minimum-weight kernel pruning within an accuracy margin (writes pruning.yml)."""
import utils.start_up  # noqa: F401  (before the slow imports: Ctrl-C at start-up is one line, exit 130)
import utils.stdlib_profile  # noqa: F401  (first: keeps our profile.py from shadowing the stdlib's)

from app.workflow import run_pruning
from utils.cli import ArgumentParser, add_device_option, use_devices
from utils.allocator import reuse_freed_memory
from utils.errors import exit_on_user_error


@exit_on_user_error
def main():
    reuse_freed_memory()
    parser = ArgumentParser(description="Prune kernels of a trained keyword spotter")
    parser.add_argument("-r", "--resume", required=True, help="checkpoint to prune (model_best.pth)")
    parser.add_argument("-c", "--config", default=None, help="config whose optimization.pruning to use "
                                                             "(default: the checkpoint's)")
    parser.add_argument("-q", "--quantization", default=None, help="quantization.yml: prune the quantized model")
    add_device_option(parser, "; this step runs on the CPU")
    parser.add_argument("-o", "--output", default=None, help="where to write (default: pruning.yml "
                                                             "next to the checkpoint)")
    args = parser.parse_args()
    use_devices(args)
    print(f"Loading checkpoint: {args.resume} ...")
    run_pruning(args.resume, args.quantization, args.config, args.output)


if __name__ == "__main__":
    main()
