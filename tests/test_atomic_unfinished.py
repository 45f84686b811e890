"""An interruption can stop an atomic write where its own cleanup never runs: between two
statements of the context manager's exit, the writer (a suspended generator) is only closed when
the garbage collector reaches it, and the scripts freeze the collector at exit. Its temporary
file is registered and removed at interpreter exit all the same."""
import json
import subprocess
import sys

from conftest import ROOT

ABANDONED = """
import gc, json, pathlib, sys
from utils import atomic
cm = atomic.atomic_open(sys.argv[1], "w")
f = cm.__enter__()
f.write("half a file")
f.flush()
cycle = [cm]
cycle.append(cycle)    # the suspended writer is now reachable only through a cycle
del cm, f, cycle
gc.freeze()            # as the scripts do at exit: the cycle is never collected
print(json.dumps(sorted(p.name for p in pathlib.Path(sys.argv[1]).parent.iterdir())))
"""


def test_a_write_abandoned_in_its_exit_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "out.txt"
    proc = subprocess.run([sys.executable, "-c", ABANDONED, str(target)], cwd=ROOT, capture_output=True,
                          text=True, check=True)
    [name] = json.loads(proc.stdout)
    assert name.startswith(".out.txt.") and name.endswith(".tmp")   # the write was in progress at exit
    assert list(tmp_path.iterdir()) == []   # and its temporary file is gone, the target never written
