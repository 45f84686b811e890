"""One error type for bad user input: the scripts print its message on one line and exit 1."""
import functools
import sys


class UserError(Exception):
    """Bad input the user can fix (missing file, wrong key, mismatched model). The message says
    what was wrong and what to do; no traceback is shown."""


def exit_on_user_error(main):
    """Decorator for a script's main(): a UserError becomes ``error: <message>`` and exit status 1."""
    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(1)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)
    return wrapper
