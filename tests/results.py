"""What a Deferred has fired with, for tests that drive time with a Clock.

Plain functions over twisted.trial's own checks (no test case instance to carry around):

    result = succeeded(pool.acquire())
    failed(d, DockerTimeout)
    pending(d)
"""

from __future__ import annotations

from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

T = TypeVar("T")

_trial = SynchronousTestCase()


def succeeded(d: Deferred[T]) -> T:
    """The result `d` has already fired with; fails the test if it has not, or failed."""
    return _trial.successResultOf(d)


def failed(d: Deferred[Any], *expected: type[BaseException]) -> Failure:
    """The Failure `d` has already failed with (of one of `expected`, if given)."""
    return _trial.failureResultOf(d, *expected)


def pending(d: Deferred[Any]) -> None:
    """`d` has not fired yet."""
    _trial.assertNoResult(d)
