"""Command-line options shared by the scripts, and their parser."""
import argparse
import os

from utils.errors import UserError


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser whose errors (an unknown flag, a value of the wrong type, a missing
    argument) are bad input like any other: one ``error:`` line and exit status 1, where argparse
    prints its usage and exits 2."""

    def error(self, message):
        raise UserError(f"{message} (see {self.prog} --help)")


def add_device_option(parser, note=""):
    """The lab's ``-d/--device`` (indices of GPUs to enable), on every script it had it on."""
    parser.add_argument("-d", "--device", default=None,
                        help="indices of GPUs to enable (sets CUDA_VISIBLE_DEVICES)" + note)


def use_devices(args):
    """Apply ``-d`` before anything touches CUDA."""
    if getattr(args, "device", None) is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(args.device)
