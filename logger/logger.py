"""Logging to the console and to ``<log_dir>/info.log``."""
import logging
import sys
from pathlib import Path

from utils.atomic import write_failure


class InfoLog(logging.FileHandler):
    """The ``info.log`` handler. A write the file system refuses (a full disk, a quota) ends the
    run like every other refused write: one line ``cannot write <path>: <reason>; <what to do>``
    from the scripts' wrapper and exit status 1, where logging's default printed a
    ``--- Logging error ---`` traceback for every later line and the run went on. The lines the
    file could not take are dropped with it, so nothing flushes them again at exit; the files the
    run saved before (checkpoints) are complete and kept."""

    def handleError(self, record: logging.LogRecord) -> None:   # logging's documented hook for a failed emit()
        error = sys.exc_info()[1]
        refused = write_failure(error, self.baseFilename)
        if refused is error:      # not a refused write: logging's own report
            super().handleError(record)
            return
        logging.getLogger().removeHandler(self)
        stream, self.stream = self.stream, None
        try:
            stream.close()        # its unwritten buffer fails to flush once more, and is gone
        except OSError:
            pass
        raise refused from None


def setup_logging(log_dir: Path, level: int = logging.INFO) -> None:
    root = logging.getLogger()
    root.setLevel(level)
    for h in list(root.handlers):
        if getattr(h, "_kws", False):
            root.removeHandler(h)
    fmt = logging.Formatter("%(message)s")
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(fmt)
    filelog = InfoLog(log_dir / "info.log", encoding="utf-8")
    filelog.setFormatter(logging.Formatter("%(asctime)s - %(name)s - %(levelname)s - %(message)s"))
    for h in (console, filelog):
        h._kws = True
        root.addHandler(h)
