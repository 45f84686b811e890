"""Post-training dynamic fixed-point quantization within an accuracy margin (writes quantization.yml)."""
import utils.start_up  # noqa: F401  (before the slow imports: Ctrl-C at start-up is one line, exit 130)
import utils.stdlib_profile  # noqa: F401  (first: keeps our profile.py from shadowing the stdlib's)

from app.workflow import run_quantization
from utils.cli import ArgumentParser, add_device_option, use_devices
from utils.allocator import reuse_freed_memory
from utils.errors import exit_on_user_error


@exit_on_user_error
def main():
    reuse_freed_memory()
    parser = ArgumentParser(description="Quantize a trained keyword spotter (Ristretto-style)")
    parser.add_argument("-r", "--resume", required=True, help="checkpoint to quantize (model_best.pth)")
    parser.add_argument("-c", "--config", default=None, help="config whose optimization.quantization to use "
                                                             "(default: the checkpoint's)")
    parser.add_argument("-p", "--pruning", default=None, help="pruning.yml: quantize the pruned model")
    parser.add_argument("-o", "--output", default=None, help="where to write (default: quantization.yml "
                                                             "next to the checkpoint)")
    add_device_option(parser, "; this step runs on the CPU")
    parser.add_argument("--per-layer", action="store_true", help="then lower each layer's weights separately")
    args = parser.parse_args()
    use_devices(args)
    print(f"Loading checkpoint: {args.resume} ...")
    run_quantization(args.resume, args.per_layer, args.pruning, args.config, args.output)


if __name__ == "__main__":
    main()
