"""Deployment bundle: compact checkpoint, ONNX, and with -q integer C code plus test vectors."""
import utils.start_up  # noqa: F401  (before the slow imports: Ctrl-C at start-up is one line, exit 130)
import utils.stdlib_profile  # noqa: F401  (first: keeps our profile.py from shadowing the stdlib's)

from app.export_bundle import export_bundle, format_summary
from deploy.firmware import HOST, TARGETS
from utils.allocator import reuse_freed_memory
from utils.cli import ArgumentParser
from utils.errors import exit_on_user_error


@exit_on_user_error
def main():
    reuse_freed_memory()
    parser = ArgumentParser(description="Export a (pruned, quantized) keyword spotter for deployment")
    parser.add_argument("-r", "--resume", required=True, help="checkpoint to export (model_best.pth)")
    parser.add_argument("-q", "--quantization", default=None,
                        help="quantization.yml: also write integer C code and test vectors")
    parser.add_argument("-p", "--pruning", default=None, help="pruning.yml: remove the pruned kernels")
    parser.add_argument("--no-stored", action="store_true",
                        help="ignore the solutions a finetuned checkpoint carries (export its weights alone)")
    parser.add_argument("-o", "--output", required=True, help="folder to write the bundle into")
    parser.add_argument("--target", default=HOST, choices=(HOST, *TARGETS),
                        help="host: C99 for any compiler (default); cortex-m4 / cortex-m7: also a firmware "
                             "folder (startup code, linker script, Makefile, test data) that `make -C DIR run` "
                             "builds with arm-none-eabi-gcc and runs under qemu-system-arm (needs -q)")
    args = parser.parse_args()
    print(f"Loading checkpoint: {args.resume} ...")
    summary = export_bundle(args.resume, args.output, args.quantization, args.pruning,
                            use_stored=not args.no_stored, target=args.target)
    print(format_summary(summary))
    if summary.target != HOST:
        print(f"Next: make -C {args.output} run   (arm-none-eabi-gcc and qemu-system-arm: replays the "
              f"{summary.clips} test clips on {summary.target})")
    elif summary.top1_integer is not None:  # the C code was written: build it and compare its scores
        print(f"Next: (cd {args.output} && gcc -std=c99 -O2 -Wall -Wextra -Werror model.c main.c -o kws && "
              f"./kws test_vectors.txt | cmp - expected_scores.txt)")


if __name__ == "__main__":
    main()
