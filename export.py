"""Deployment bundle: compact checkpoint, ONNX, and with -q integer C code plus test vectors."""
import utils.start_up  # noqa: F401  (before the slow imports: Ctrl-C at start-up is one line, exit 130)
import utils.stdlib_profile  # noqa: F401  (first: keeps our profile.py from shadowing the stdlib's)
import argparse
from app.cli import entry, script_parser
from app.export_bundle import export_bundle, format_summary
from deploy.firmware import HOST, TARGETS


def parser() -> argparse.ArgumentParser:
    parser = script_parser("Export a (pruned, quantized) keyword spotter for deployment", required=("resume", "output"),
                           resume="checkpoint to export (model_best.pth)",
                           quantization="quantization.yml: also write integer C code and test vectors",
                           pruning="pruning.yml: remove the pruned kernels",
                           no_stored="ignore the solutions a finetuned checkpoint carries (export its weights alone)",
                           output="folder to write the bundle into")
    parser.add_argument("--target", default=HOST, choices=(HOST, *TARGETS),
                        help="host: C99 for any compiler (default); cortex-m4 / cortex-m7: also a firmware "
                             "folder (startup code, linker script, Makefile, test data) that `make -C DIR run` "
                             "builds with arm-none-eabi-gcc and runs under qemu-system-arm (needs -q)")
    return parser


def run(args: argparse.Namespace) -> None:
    print(f"Loading checkpoint: {args.resume} ...")
    summary = export_bundle(args.resume, args.output, args.quantization, args.pruning,
                            use_stored=not args.no_stored, target=args.target)
    print(format_summary(summary))
    if summary.target != HOST:
        stream = " and a recording through the stream" if summary.pcm_mismatches is not None else ""
        print(f"Next: make -C {args.output} run   (arm-none-eabi-gcc and qemu-system-arm: replays the "
              f"{summary.clips} test clips{stream} on {summary.target})")
    elif summary.top1_integer is not None:  # the C code was written: build it and compare its scores
        print(f"Next: (cd {args.output} && gcc -std=c99 -O2 -Wall -Wextra -Werror model.c main.c -o kws && "
              f"./kws test_vectors.txt | cmp - expected_scores.txt)")


main = entry(parser, run)

if __name__ == "__main__":
    main()
