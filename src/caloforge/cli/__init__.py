"""The ``caloforge`` command: its sub-commands in :mod:`caloforge.cli.main`, the output checks in
:mod:`caloforge.cli.checks`; :func:`run` is the installed program's entry point."""

from __future__ import annotations

import signal
import sys


def run() -> None:
    """The ``caloforge`` program: the stop signals (SIGINT, SIGTERM, SIGHUP) handled from its first moment, before
    the command line and its libraries are imported, then :data:`caloforge.cli.main.app`."""
    from caloforge.atomic import install_signal_handlers

    install_signal_handlers()
    try:
        from caloforge.cli.main import app
    except KeyboardInterrupt as stop:  # a stop while the program was still starting: nothing was done
        signum = getattr(stop, "signum", signal.SIGINT)
        print(f"stopped by {signal.Signals(signum).name} while starting: nothing was done", file=sys.stderr)
        sys.exit(128 + signum)
    app()
