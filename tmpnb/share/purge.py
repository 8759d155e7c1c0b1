"""Expired shares leave the store: a purge every period, on the injected clock."""

from __future__ import annotations

from typing import Any

from twisted.application.internet import TimerService

from tmpnb.share.service import Sharing


def share_purge(clock: Any, sharing: Sharing, period: float) -> TimerService:
    """A service that purges at start and every `period` seconds; a purge still running when
    the next is due is not doubled (TimerService waits for the Deferred)."""
    service = TimerService(period, sharing.purge_now)
    service.clock = clock
    return service
