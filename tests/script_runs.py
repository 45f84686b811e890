"""Running the user-facing scripts from tests: ``main()`` in this process (fast, for the named
bad-input and fault cases), or as a subprocess under resource limits (the fuzzes: a hang, a
runaway loop or an unbounded allocation fails the example, not the machine), and the outcome
every bad input must have: exit 0 with output, or exit 1 with one ``error:`` line."""
import logging
import os
import resource
import runpy
import subprocess
import sys

import pytest

from conftest import ROOT

MEMORY_LIMIT = 3 * 2 ** 30   # bytes of address space a limited run may map (a tiny run maps under 1 GiB)
CPU_LIMIT = 60               # seconds of CPU a limited run may use (RLIMIT_CPU: SIGXCPU past it)
WALL_LIMIT = 120             # seconds a limited run may take on a loaded machine before it is killed


def drop_log_handlers():
    """Remove the info.log handlers a run added to the root logger (in-process runs share it)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_kws", False):
            root.removeHandler(h)
            h.close()


def call_main(script, args, cwd=ROOT, run_name="in_process_case"):
    """``script``'s main() in this process with ``args`` as its command line, run in folder
    ``cwd``; its exit status (0 when main() returns or exits without a status)."""
    namespace = runpy.run_path(str(ROOT / script), run_name=run_name)
    argv, here = sys.argv, os.getcwd()
    sys.argv = [script, *map(str, args)]
    os.chdir(cwd)
    try:
        namespace["main"]()
        return 0
    except SystemExit as e:
        return 0 if e.code is None else e.code
    finally:
        sys.argv = argv
        os.chdir(here)
        drop_log_handlers()


def _set_limits(memory, cpu):
    def limit():   # in the child, before exec
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    return limit


def run_limited(script, args, cwd=ROOT, memory=MEMORY_LIMIT, cpu=CPU_LIMIT, timeout=WALL_LIMIT):
    """``script`` with ``args`` as a subprocess, one thread, its address space and CPU time capped
    (setrlimit) and killed after ``timeout`` s of wall clock (which fails the test): the
    CompletedProcess."""
    command = [sys.executable, str(ROOT / script), *map(str, args)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    try:
        return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env,
                              preexec_fn=_set_limits(memory, cpu))
    except subprocess.TimeoutExpired:
        pytest.fail(f"ran past {timeout} s (a hang?): {command}")


def assert_success_or_one_line(proc, what=""):
    """Exit 0 with something on stdout, or exit 1 with exactly one line ``error: ...`` on stderr
    and no traceback; anything else (a traceback, a signal from a limit, another status) fails,
    naming ``what`` (the example) and the end of stderr."""
    where = f"{what}\nstatus {proc.returncode}; stderr ends:\n{proc.stderr[-3000:]}"
    assert proc.returncode in (0, 1), where
    assert "Traceback" not in proc.stderr, where
    if proc.returncode == 1:
        assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1 \
            and proc.stderr.endswith("\n") and proc.stderr[:-1].isprintable(), where
    else:
        assert proc.stdout.strip(), where
