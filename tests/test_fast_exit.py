"""utils/fast_exit.py: a finished script skips the interpreter's teardown but keeps what it owes."""
import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _script(tmp_path, body):
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(f"""
        import atexit, sys, threading, time
        sys.path.insert(0, {ROOT!r})
        from utils.fast_exit import run_and_exit
        marker = {str(tmp_path / "atexit.txt")!r}
        atexit.register(lambda: open(marker, "w").write("ran"))
        def main():
        """) + textwrap.indent(textwrap.dedent(body), "    ") + "\nrun_and_exit(main)\n")
    return subprocess.run([sys.executable, str(path)], capture_output=True, text=True, cwd=tmp_path)


def test_atexit_handlers_run_and_buffered_output_is_flushed(tmp_path):
    done = _script(tmp_path, """
        sys.stdout.write("no newline, still buffered")
        sys.stderr.write("err")
        """)
    assert (done.returncode, done.stdout, done.stderr) == (0, "no newline, still buffered", "err")
    assert (tmp_path / "atexit.txt").read_text() == "ran"


def test_an_exception_takes_the_normal_exit(tmp_path):
    done = _script(tmp_path, 'raise RuntimeError("boom")')
    assert done.returncode == 1 and "RuntimeError: boom" in done.stderr
    assert (tmp_path / "atexit.txt").read_text() == "ran"


def test_a_running_non_daemon_thread_is_waited_for(tmp_path):
    done = _script(tmp_path, """
        out = open("thread.txt", "w")
        def work():
            time.sleep(0.5)
            out.write("finished")
            out.close()
        threading.Thread(target=work).start()
        """)
    assert done.returncode == 0
    assert (tmp_path / "thread.txt").read_text() == "finished"
