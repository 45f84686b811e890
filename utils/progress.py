"""Progress bars (tqdm) that redraw only on a terminal: redirected to a file or a CI log, a
redrawing bar writes a line per update, which buries the output people read."""
import sys

from tqdm import tqdm


def progress_bar(iterable=None, enabled=True, **kwargs):
    """A tqdm bar, shown when ``enabled`` and stderr is a terminal."""
    return tqdm(iterable, disable=not (enabled and sys.stderr.isatty()), **kwargs)
