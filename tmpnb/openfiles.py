"""Enough file descriptors for the front door: the soft RLIMIT_NOFILE raised to the hard one.

Every visitor connection costs the process a descriptor (two while a request is forwarded),
and so does every container's socket the proxy holds. With systemd's and most shells' soft
limit of 1024, a few hundred slow clients would exhaust them and `accept` fail for everyone,
whatever the deadlines do. The hard limit is the operator's ceiling; raising the soft limit to
it is what Go's runtime and many servers do at start.
"""

from __future__ import annotations

import resource

from twisted.application.service import Service
from twisted.logger import Logger

log = Logger()

# Below this many descriptors the defaults (256 connections per client, 32 + --max-waiting to
# the orchestrator, a socket per container) can run out under a modest attack.
WARN_BELOW = 4096
# When the hard limit is unlimited, the kernel still caps RLIMIT_NOFILE at fs.nr_open.
UNLIMITED_TARGET = 1 << 20


def raise_soft_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard one; (soft, hard) afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = UNLIMITED_TARGET if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass  # the kernel's nr_open is lower: keep what we have
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft, hard


class OpenFileLimit(Service):
    """At start: the soft limit raised, and a warning when it stays low."""

    def startService(self) -> None:
        super().startService()
        soft, hard = raise_soft_limit()
        if soft != resource.RLIM_INFINITY and soft < WARN_BELOW:
            log.warn("only {soft} open files allowed (hard limit {hard}): raise it (ulimit -n, systemd LimitNOFILE=)"
                     " or a few hundred slow clients exhaust them", soft=soft, hard=hard)
        else:
            log.info("open files: up to {soft}", soft=soft)
