"""Expected faults and bugs: which is which, and how each is logged.

tmpnb lives with Docker being down or hung, a proxy restarting and containers vanishing:
those are warnings (their lasting effect shows in /health, kept by tmpnb/health.py), one
line each. Anything else that escapes is a bug, logged with `log.failure` and its traceback,
which the integration tests treat as a failure.
"""

from __future__ import annotations

from typing import Any

import docker.errors
from twisted.internet import defer
from twisted.internet import error as netError
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import _newclient

from tmpnb.dockerapi import DockerTimeout, DockerUnavailable
from tmpnb.proxyapi import ProxyAPIError

EXPECTED_FAULTS: tuple[type[BaseException], ...] = (
    # dockerd down, hung, or answering with an error (a container already gone, say)
    DockerTimeout,
    DockerUnavailable,
    docker.errors.DockerException,
    # a proxy (CHP, or a server's socket) refusing, restarting, or answering an error
    ProxyAPIError,
    ConnectionError,  # refused, reset, aborted, broken pipe
    FileNotFoundError,  # a unix socket whose container is gone
    netError.ConnectError,
    netError.ConnectionLost,
    netError.ConnectionDone,
    netError.TimeoutError,
    _newclient.ResponseFailed,
    _newclient.RequestTransmissionFailed,
    _newclient.ResponseNeverReceived,
    # a call given up on by our own timeout
    TimeoutError,
    defer.TimeoutError,
)


def is_expected(failure: Failure) -> bool:
    """True for the faults tmpnb is built to live with (see EXPECTED_FAULTS)."""
    return _first(failure).check(*EXPECTED_FAULTS) is not None


def _first(failure: Failure) -> Failure:
    """gatherResults fails with FirstError: what counts is the failure inside it."""
    while isinstance(failure.value, defer.FirstError):
        failure = failure.value.subFailure
    return failure


def cause_of(failure: Failure) -> str:
    """`ConnectionRefusedError: Connection refused`: a fault in one line, for a warning."""
    failure = _first(failure)
    return f"{failure.type.__name__}: {failure.getErrorMessage()}"


def log_fault(log: Logger, failure: Failure, doing: str, **fields: Any) -> None:
    """Log `failure`, met while `doing` (a format string over `fields`): a warning with its
    cause when it is an expected fault, `log.failure` with its traceback when it is a bug."""
    if is_expected(failure):
        log.warn(doing + " failed: {cause}", cause=cause_of(failure), **fields)
    else:
        log.failure(doing, failure, **fields)
