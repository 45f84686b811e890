"""Logging to the console and to ``<log_dir>/info.log``."""
import logging
import sys
from pathlib import Path


def setup_logging(log_dir: Path, level: int = logging.INFO) -> None:
    root = logging.getLogger()
    root.setLevel(level)
    for h in list(root.handlers):
        if getattr(h, "_kws", False):
            root.removeHandler(h)
    fmt = logging.Formatter("%(message)s")
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(fmt)
    filelog = logging.FileHandler(log_dir / "info.log", encoding="utf-8")
    filelog.setFormatter(logging.Formatter("%(asctime)s - %(name)s - %(levelname)s - %(message)s"))
    for h in (console, filelog):
        h._kws = True
        root.addHandler(h)
