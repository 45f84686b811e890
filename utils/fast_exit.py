"""End a finished script without the interpreter's slow teardown.

With torch imported, interpreter shutdown (module teardown, torch's C++ destructors) takes 0.4-0.8 s
on these cores, a quarter of ``test.py``'s wall time. After ``main()`` returns, the atexit handlers
still run (logging's flush and close, temporary folders' cleanup), stdout and stderr are flushed,
and the process ends with ``os._exit(0)``. An exception or ``sys.exit`` in ``main()`` takes the
normal path, and so does a process with a non-daemon thread still running (the interpreter would
wait for it); a caller importing ``main`` (the tests) is not affected.
"""
import atexit
import os
import sys
import threading


def run_and_exit(main):
    """``main()``, then a fast exit with status 0."""
    main()
    if any(t is not threading.main_thread() and t.is_alive() and not t.daemon for t in threading.enumerate()):
        return  # the normal exit, which joins it
    atexit._run_exitfuncs()  # noqa: SLF001 - the interpreter's own handlers, before skipping its teardown
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
