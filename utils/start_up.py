"""Imported first by every script (before the seconds of importing torch): Ctrl-C from here on
is one line and exit status 130 (utils.interrupt), and the garbage collector waits for main()
(utils.collection). A module of its own, so that importing the project's code elsewhere (the
tests) changes no signal handler and leaves the collector alone."""
from utils.collection import during_start_up as collect_after_imports
from utils.interrupt import during_start_up

during_start_up()
collect_after_imports()
