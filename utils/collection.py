"""The cyclic garbage collector around a script's run: off while it imports, and not walking
what the imports made afterwards.

Importing torch and the project makes a few hundred thousand objects (modules, functions,
classes, torch's operator tables) that live until the process ends and form no garbage. With
the collector on, the imports trigger several full collections that walk all of them again
(more when an optimizer's first use imports torch's compiler front end), and the collections of
the interpreter's exit walk them once more: a large share of a short step's time (the figures
are in docs/benchmarks.md, "The garbage collector around the imports"). The scripts therefore
start with the collector off (:func:`during_start_up`, from ``utils.start_up``), move everything alive when ``main()`` starts to the permanent generation
and turn it on again (:func:`during_main`): the run's own objects are collected as usual, the
imported ones are left out. :func:`after_main` puts them back for a process that goes on after
``main()`` (the tests call it in-process), and :func:`at_exit` freezes everything again for the
exit's collections. Nothing else changes: atexit handlers, module teardown and the freeing of
objects by reference count all run as before (the ``gc.freeze`` pattern of Python's docs).
"""
import atexit
import gc


def during_start_up() -> None:
    """No collections while the script imports."""
    gc.disable()


def during_main() -> None:
    """The objects alive now are left out of later collections; collection resumes."""
    gc.freeze()
    gc.enable()


def after_main() -> None:
    """The objects frozen at :func:`during_main` are collected as usual again."""
    gc.unfreeze()


def at_exit() -> None:
    """At interpreter exit, move every object to the permanent generation before the exit's
    collections (registered once, however often called)."""
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)
