"""The ``tmpnb-proxy`` command: configurable-http-proxy's command line, run on Twisted.

JupyterHub starts it itself with ``c.ConfigurableHTTPProxy.command = ["tmpnb-proxy"]``.
Logs go to stderr, filtered by ``--log-level``; SIGTERM and SIGINT stop it.
"""

from __future__ import annotations

import sys

from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    Logger,
    PredicateResult,
    globalLogBeginner,
    textFileLogObserver,
)
from twisted.python import usage

from tmpnb import __version__
from tmpnb.proxy.options import Options

log = Logger()

_LEVELS = {"debug": LogLevel.debug, "info": LogLevel.info, "warn": LogLevel.warn, "error": LogLevel.error}


def _without_factory_chatter(event: dict) -> PredicateResult:
    """Twisted says "Starting factory" for every connection to a target: debug, not info."""
    if str(event.get("log_format", "")).startswith(("Starting factory", "Stopping factory")):
        return PredicateResult.no
    return PredicateResult.maybe


def main(argv: list[str] | None = None) -> int:
    options = Options()
    try:
        options.parseOptions(sys.argv[1:] if argv is None else argv)
    except usage.UsageError as error:
        print(f"tmpnb-proxy: {error}", file=sys.stderr)
        print("tmpnb-proxy --help lists the options", file=sys.stderr)
        return 1
    if options["version"]:
        print(__version__)
        return 0
    level = _LEVELS[options["log-level"]]
    predicates = [LogLevelFilterPredicate(defaultLogLevel=level)]
    if level > LogLevel.debug:
        predicates.append(_without_factory_chatter)
    globalLogBeginner.beginLoggingTo([FilteringLogObserver(textFileLogObserver(sys.stderr), predicates)])
    options["log-level-applied"] = True

    from twisted.internet import reactor

    from twisted.internet.error import CannotListenError

    from tmpnb.proxy.tap import makeService
    from tmpnb.proxy.tls import TLSConfigError

    try:
        service = makeService(options, reactor)
        service.startService()
    except (TLSConfigError, CannotListenError, OSError, ValueError) as error:
        log.error("tmpnb-proxy cannot start: {error}", error=str(error))
        return 1
    except Exception:
        log.failure("tmpnb-proxy cannot start")
        return 1
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
