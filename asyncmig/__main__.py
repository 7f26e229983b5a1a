"""``python -m asyncmig``: the same as the ``asyncmig`` console script."""

from asyncmig.cli import signals

if __name__ == "__main__":  # worker processes import this module without running it
    signals.install()  # before the heavy imports: a SIGTERM at once still exits cleanly
    try:
        with signals.deferred():  # a signal meanwhile is raised after the imports
            from asyncmig.cli.main import entry
    except signals.SignalReceived as stop:
        raise SystemExit(signals.report(stop)) from None
    raise SystemExit(entry())
