"""Progress bars that redraw only on a terminal.

A tqdm bar redraws itself with carriage returns several times a second; in a file (CI logs,
``make demo > log``) that is hundreds of kilobytes of half-lines. Every bar of the project is made
here, and is shown only when asked for *and* stderr is a terminal.
"""
import sys


def on_terminal(stream=None):
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


def progress_bar(iterable=None, enabled=True, **kwargs):
    """A tqdm bar, disabled unless ``enabled`` and stderr is a terminal (tqdm writes to stderr);
    tqdm is imported on first use."""
    from tqdm import tqdm
    return tqdm(iterable, disable=not (enabled and on_terminal(kwargs.get("file"))), **kwargs)


def write_line(text):
    """Print a line without breaking a bar that may be on screen."""
    from tqdm import tqdm
    tqdm.write(text)
