"""Atomic file writes: write a temporary file in the target folder, then rename it over the
target, so a crash or Ctrl-C never leaves a half-written file that a later run trusts."""
import io
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import yaml

from utils.errors import UserError


_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_open(path, mode="w", **kwargs):
    """Open a temporary sibling of ``path`` for writing; on success it replaces ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text(path, text):
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


def write_bytes(path, data):
    with atomic_open(path, "wb") as f:
        f.write(data)


def write_yaml(path, data):
    write_text(path, yaml.safe_dump(data, sort_keys=False, default_flow_style=None))


def torch_save(obj, path):
    import torch
    buf = io.BytesIO()
    torch.save(obj, buf)
    write_bytes(path, buf.getvalue())


def save_figure(fig, path):
    """Save a matplotlib figure as PNG atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    write_bytes(path, buf.getvalue())


def read_yaml(path, what="YAML file"):
    """safe_load a YAML mapping; missing or malformed files raise UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} not found: {path} (check the path)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"{what} {path} is not valid YAML ({first}); fix or regenerate it")
    if not isinstance(data, dict):
        raise UserError(f"{what} {path} must hold a YAML mapping, found {type(data).__name__}")
    return data
