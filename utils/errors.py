"""One error type for bad user input: the scripts print its message on one line and exit 1."""
import errno
import functools
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from utils import interrupt

_P = ParamSpec("_P")
_R = TypeVar("_R")


MAX_MESSAGE = 2000   # characters of an error message printed (a forged file can make one huge)

# errno of a refused write -> what the user does about it (utils.atomic names the path it wrote)
WRITE_ERRORS = {
    errno.ENOSPC: "the disk is full: free some space or write elsewhere",
    errno.EDQUOT: "the disk quota is used up: free some space or write elsewhere",
    errno.EFBIG: "the file is larger than this file system or the file-size limit allows: write elsewhere",
    errno.EROFS: "the file system is read-only: write elsewhere",
    errno.EACCES: "check the permissions, or write elsewhere",
    errno.EPERM: "check the permissions, or write elsewhere",
    errno.ENOTDIR: "a part of that path is a file, not a folder: choose another path",
}


def one_line(text: object, limit: int = MAX_MESSAGE) -> str:
    """``text`` on one printable line: newlines, terminal escapes and other control characters
    (from a file name, a key, a checkpoint's keyword) shown as backslash escapes, then bounded."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")   # lone surrogates of a file name
    return text if len(text) <= limit else text[:limit] + "..."


class UserError(Exception):
    """Bad input the user can fix (missing file, wrong key, mismatched model). The message says
    what was wrong and what to do; no traceback is shown. The message is kept to one printable
    line (:func:`one_line`) whatever names it quotes."""

    def __init__(self, message: object = "") -> None:
        super().__init__(one_line(message))


def exit_on_user_error(main: Callable[_P, _R]) -> Callable[_P, _R]:
    """Decorator for a script's main(): a UserError becomes ``error: <message>`` and exit status 1."""
    @functools.wraps(main)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        interrupt.during_main()
        try:
            return main(*args, **kwargs)
        except UserError as e:
            print(f"error: {one_line(e)}", file=sys.stderr)
            sys.exit(1)
        except OSError as e:   # a refused write outside utils.atomic (a log file, tensorboard's events)
            if e.errno not in WRITE_ERRORS:
                raise
            print(f"error: {one_line(e.filename or 'a file')}: {e.strerror}; {WRITE_ERRORS[e.errno]}", file=sys.stderr)
            sys.exit(1)
        except KeyboardInterrupt:
            print(interrupt.MESSAGE, file=sys.stderr)
            sys.exit(interrupt.STATUS)
    return wrapper
