"""The one entry of the scripts: the options they share, and one runner for start and errors.

Every script builds its parser with ``script_parser`` (the lab's ``-r/-c/-q/-p/-d/-o/--no-stored``,
each with the script's own help text, in the order given) and sets ``main = entry(parser, run)``: glibc
keeps freed memory for the next training step, ``-d`` is applied before anything touches CUDA, and
a UserError (a bad flag too: utils.cli.ArgumentParser) becomes one ``error: ...``
line and exit status 1; and the garbage collector leaves the imported modules' objects out of
the run's and the exit's collections (utils.collection).
"""
import argparse
import os
from collections.abc import Callable

from utils import collection
from utils.allocator import reuse_freed_memory
from utils.cli import ArgumentParser
from utils.errors import exit_on_user_error

# name: (flags, argparse keywords) of the options several scripts share
COMMON_OPTIONS = {
    "config": (("-c", "--config"), {"default": None}),
    "resume": (("-r", "--resume"), {"default": None}),
    "device": (("-d", "--device"), {"default": None}),
    "quantization": (("-q", "--quantization"), {"default": None}),
    "pruning": (("-p", "--pruning"), {"default": None}),
    "no_stored": (("--no-stored",), {"action": "store_true"}),
    "output": (("-o", "--output"), {"default": None}),
}
CPU_DEVICE = "indices of GPUs to enable (sets CUDA_VISIBLE_DEVICES); this step runs on the CPU"
NO_STORED = "ignore the solutions a finetuned checkpoint carries (evaluate its weights alone)"


def script_parser(description: str, required: tuple = ("resume",), **helps: str) -> argparse.ArgumentParser:
    """An ArgumentParser with the common options named in ``helps`` (name -> help text, in that
    order); those in ``required`` must be given."""
    parser = ArgumentParser(description=description)
    for name, text in helps.items():
        flags, keywords = COMMON_OPTIONS[name]
        parser.add_argument(*flags, **keywords, **({"required": True} if name in required else {}), help=text)
    return parser


def entry(parser: Callable[[], argparse.ArgumentParser], run: Callable[[argparse.Namespace], object]) -> Callable[[], object]:
    """A script's ``main()``: parse the command line with ``parser()`` and call ``run(args)``, with
    the scripts' one error handling (exit_on_user_error)."""
    @exit_on_user_error
    def main() -> object:

        collection.at_exit()
        collection.during_main()
        try:
            reuse_freed_memory()
            args = parser().parse_args()
            if getattr(args, "device", None) is not None:   # before anything touches CUDA
                os.environ["CUDA_VISIBLE_DEVICES"] = str(args.device)
            return run(args)
        finally:
            collection.after_main()
    return main
