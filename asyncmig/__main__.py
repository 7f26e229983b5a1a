"""``python -m asyncmig``: the same as the ``asyncmig`` console script."""

import signal
import sys

if __name__ == "__main__":  # worker processes import this module without running it
    try:
        from asyncmig.cli import signals
    except KeyboardInterrupt:  # SIGINT before any of asyncmig ran: signals.message's line
        print(
            "asyncmig: interrupted by SIGINT: work in flight was rolled back and the target "
            "left as it was; re-run the same command to resume",
            file=sys.stderr,
        )
        raise SystemExit(128 + signal.SIGINT) from None
    try:
        signals.install()  # before the heavy imports: a SIGTERM at once still exits cleanly
        with signals.deferred():  # a signal meanwhile is raised after the imports
            from asyncmig.cli.main import entry
    except signals.SignalReceived as stop:  # also one that came while installing
        raise SystemExit(signals.report(stop)) from None
    except KeyboardInterrupt:  # SIGINT before its handler was in place
        raise SystemExit(signals.report(signals.SignalReceived(signal.SIGINT))) from None
    raise SystemExit(entry())
