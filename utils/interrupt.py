"""Ctrl-C is one line and exit status 130, at any moment of a script.

Every script imports :mod:`utils.start_up` first, which calls :func:`during_start_up`: until its
main() starts (the imports of torch and the rest take
seconds), SIGINT prints the line and exits (SystemExit), as nothing has been written yet.
:func:`utils.errors.exit_on_user_error` then puts Python's own handler back, so that inside main()
Ctrl-C raises KeyboardInterrupt: every atomic write on the way removes its temporary file, a run
folder that holds nothing yet is discarded, and the wrapper prints the same line.
"""
import os
import signal
import threading

MESSAGE = ("error: interrupted (Ctrl-C); no file was left half-written: run the command again "
           "(a training resumes with -r and its last checkpoint)")
STATUS = 130   # 128 + SIGINT, what a shell reports for a process Ctrl-C ended


def _exit_at_start_up(signum, frame):
    os.write(2, (MESSAGE + "\n").encode())
    raise SystemExit(STATUS)   # not an error: no traceback, whatever import it stops


def during_start_up() -> None:
    """SIGINT ends the process with MESSAGE and STATUS (nothing to clean up yet)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _exit_at_start_up)


def during_main() -> None:
    """SIGINT raises KeyboardInterrupt again (Python's own handler), so cleanups run."""
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGINT) is _exit_at_start_up:
        signal.signal(signal.SIGINT, signal.default_int_handler)

