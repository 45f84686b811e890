"""The scripts' argument parser (app/cli.py builds their shared options with it)."""
import argparse
from typing import NoReturn

from utils.errors import UserError


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser whose errors (an unknown flag, a value of the wrong type, a missing
    argument) are bad input like any other: one ``error:`` line and exit status 1, where argparse
    prints its usage and exits 2."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message} (see {self.prog} --help)")
