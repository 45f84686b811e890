"""Atomic file writes: write a temporary file in the target folder, then rename it over the
target, so a crash or Ctrl-C never leaves a half-written file that a later run trusts.

A temporary file is named ``.<name>.<pid>.<random>.tmp``. A write removes its own when it fails
or is interrupted; an interruption can also land where that cleanup never runs (between two
statements of the context manager's exit, after which the suspended writer is only closed if the
garbage collector gets to it), so every temporary file is registered as soon as it is created
and those of unfinished writes are removed at interpreter exit. A process killed with SIGKILL cannot
remove its own, so every write first removes stale ones in its folder (once per folder and
process): ours by name, whose writer process is gone or which are older than STALE_SECONDS.
Folders matching ``.<name>.<pid>.<kind>-<random>`` (e.g. the download's extraction folder) are
treated the same way by :func:`remove_stale`.

A write that the file system refuses (disk full, quota, file-size limit, read-only, no
permission) is a :class:`WriteError`: one line naming the path and what to do, and still an
OSError, so a caller that can do without the file (the feature cache) goes on. A path that
exists and is not a regular file (a FIFO, a device, a folder, a symbolic link) is never replaced.
"""
from __future__ import annotations

import atexit
import errno
import io
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import yaml

from utils import yaml_reader
from utils.errors import WRITE_ERRORS, UserError

if TYPE_CHECKING:
    from matplotlib.figure import Figure


_UMASK = os.umask(0)
os.umask(_UMASK)

STALE_SECONDS = 3600
_unfinished: set[str] = set()   # temporary files of this process's writes in progress


def remove_unfinished() -> None:
    """Remove the temporary files of writes that never finished (registered at interpreter exit)."""
    for tmp in list(_unfinished):
        try:
            os.unlink(tmp)
        except OSError:
            pass
        _unfinished.discard(tmp)


atexit.register(remove_unfinished)

# .<name>.<pid>.<8 random>.tmp (files) and .<name>.<pid>.<kind>-<8 random> (folders); the older
# .<name>.<8 random>.tmp without a pid is recognised too and removed by age only
_TEMP = re.compile(r"^\.(?P<name>.+?)\.(?:(?P<pid>\d+)\.)?(?:[a-z0-9_]{8}\.tmp|[a-z]+-[a-z0-9_]{8})$")
_cleaned = set()

class WriteError(UserError, OSError):
    """A write the file system refused, as one line naming the path and what to do; an OSError
    with the original errno too."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.errno = code


def write_failure(error: BaseException, path: str | os.PathLike) -> BaseException:
    """``error`` (an OSError of writing ``path``) as a WriteError when it is a refused write
    (WRITE_ERRORS), else ``error`` itself."""
    if isinstance(error, UserError) or not isinstance(error, OSError):
        return error
    advice = WRITE_ERRORS.get(error.errno)
    if error.errno == errno.ENOENT and Path(path).parent.is_dir():   # /proc: a folder that takes no new file
        advice = "that folder takes no new files: write elsewhere"
    if advice is None:
        return error
    return WriteError(f"cannot write {path}: {error.strerror or os.strerror(error.errno)}; {advice}", error.errno)


KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"),
         (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def check_replaceable(path: str | os.PathLike) -> None:
    """A UserError when ``path`` exists and is not a regular file: a FIFO, a device, a folder or
    a symbolic link is never replaced by a file (as root, ``-o /dev/null`` would replace the device)."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in KINDS if test(mode)), "not a regular file")
        raise UserError(f"{path} is {kind}, not a regular file, and is not replaced; choose another path")


def make_folder(path: str | os.PathLike) -> Path:
    """``path`` and its parents as folders (existing ones kept); a refused write is a WriteError,
    an existing non-folder a UserError."""
    path = Path(path)
    blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise UserError(f"{blocker} exists and is not a folder; choose another path")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_failure(e, path) from None
    return path


def temp_prefix(path: str | os.PathLike) -> str:
    """The name prefix of our temporary siblings of ``path`` (carries this process's id)."""
    return f".{Path(path).name}.{os.getpid()}."


def writer_alive(pid: int) -> bool:
    """False only when no process ``pid`` exists (a pid of another user counts as alive)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True
    return True


def remove_stale(folder: str | os.PathLike, now: float | None = None) -> list[str]:
    """Remove our temporary files and folders in ``folder`` left by killed writers: those whose
    pid is not running, or older than STALE_SECONDS. Returns the names removed."""
    folder = Path(folder)
    now = time.time() if now is None else now
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _TEMP.match(entry.name)
        if not m:
            continue
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        pid = m.group("pid")
        if age < STALE_SECONDS and (pid is None or writer_alive(int(pid))):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed.append(entry.name)
        except OSError:
            pass
    return removed


def clean_once(folder: str | os.PathLike) -> None:
    """remove_stale(folder) the first time this process writes there."""
    key = os.path.abspath(folder)
    if key not in _cleaned:
        _cleaned.add(key)
        remove_stale(folder)


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; on success it replaces ``path``."""
    path = Path(path)
    check_replaceable(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        clean_once(path.parent)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path), suffix=".tmp")
        _unfinished.add(tmp)
    except OSError as e:
        raise write_failure(e, path) from None
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _unfinished.discard(tmp)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        _unfinished.discard(tmp)
        failure = write_failure(e, path)
        if failure is e:
            raise
        raise failure from None


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def write_yaml(path: str | os.PathLike, data: object) -> None:
    write_text(path, yaml_reader.dumps(data))


def torch_save(obj: object, path: str | os.PathLike) -> None:
    import torch
    buf = io.BytesIO()
    torch.save(obj, buf)
    write_bytes(path, buf.getvalue())


def write_together(contents: Mapping[str | os.PathLike, bytes]) -> None:
    """Files that belong together ({path: bytes}, e.g. a YAML report and its PNG): every one is
    written to its temporary file and synced first, and only then are they renamed into place, so
    a refused write (a full disk) or an interruption while writing replaces none of them."""
    with ExitStack() as stack:
        for path, data in contents.items():
            f = stack.enter_context(atomic_open(path, "wb"))
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def yaml_bytes(data: object) -> bytes:
    """``data`` as the UTF-8 YAML text write_yaml writes (for write_together)."""
    return yaml_reader.dumps(data).encode("utf-8")


def figure_png(fig: Figure) -> bytes:
    """A matplotlib figure as PNG bytes (the resolution every saved figure uses)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def save_figure(fig: Figure, path: str | os.PathLike) -> None:
    """Save a matplotlib figure as PNG atomically."""
    write_bytes(path, figure_png(fig))


def read_yaml(path: str | os.PathLike, what: str = "YAML file") -> dict[str, Any]:
    """A YAML mapping read with :mod:`utils.yaml_reader` (safe, no aliases, no duplicate keys,
    depth- and size-limited); a missing, unreadable, oversized or malformed file is a UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} not found: {path} (check the path; it must be a regular file)")
    try:
        if path.stat().st_size > yaml_reader.MAX_BYTES:
            raise yaml_reader.YAMLShapeError(f"{path.stat().st_size:,} bytes, above the "
                                             f"{yaml_reader.MAX_BYTES:,} a YAML file here may hold")
        data = yaml_reader.loads(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise UserError(f"{what} {path} is not valid YAML ({yaml_reader.first_line(e)}); fix or regenerate it") from None
    except OSError as e:
        raise UserError(f"cannot read {what} {path}: {e.strerror or type(e).__name__}; check its permissions") from None
    if not isinstance(data, dict):
        raise UserError(f"{what} {path} must hold a YAML mapping, found {type(data).__name__}")
    return data
