"""Imported first by every script (before the seconds of importing torch): Ctrl-C from here on
is one line and exit status 130 (utils.interrupt). A module of its own, so that importing the
project's code elsewhere (the tests) changes no signal handler."""
from utils.interrupt import during_start_up

during_start_up()
