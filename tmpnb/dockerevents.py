"""Docker's events stream for one tmpnb instance, followed in a thread of its own.

The stream blocks for as long as dockerd lives, so it must not hold a worker of the bounded
Docker pool (`dockercalls`); what it learns is handed to the reactor thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from twisted.logger import Logger

from tmpnb.dockerrecipe import ID_LABEL, INSTANCE_LABEL

log = Logger(namespace="tmpnb.dockerapi")  # the name operators filter docker logs by

# Reconnecting the events stream after dockerd went away.
WATCH_BACKOFF_INITIAL = 1.0
WATCH_BACKOFF_MAX = 30.0


def event_of(event: dict[str, Any], instance: str) -> tuple[str, str] | None:
    """(tmpnb id, action) from one decoded Docker event, if it is about one of ours."""
    attributes = (event.get("Actor") or {}).get("Attributes") or {}
    if event.get("Type", "container") != "container":
        return None
    if attributes.get(INSTANCE_LABEL) != instance or not attributes.get(ID_LABEL):
        return None
    action = event.get("Action") or event.get("status") or ""
    # "exec_start: sh -c …", "health_status: healthy": the verb is enough.
    return attributes[ID_LABEL], action.split(":", 1)[0].strip()


class EventWatcher:
    """Follows dockerd's events for one instance in its own thread, forever, reconnecting.

    The stream blocks for as long as dockerd lives, so it must not hold a worker of the
    bounded pool. Everything the thread learns is handed to the reactor by `deliver`.
    """

    def __init__(
        self,
        client_factory: Callable[[], Any],
        instance: str,
        deliver: Callable[..., None],
        on_event: Callable[[str, str], None],
        backoff_initial: float = WATCH_BACKOFF_INITIAL,
        backoff_max: float = WATCH_BACKOFF_MAX,
    ) -> None:
        self._client_factory = client_factory
        self._instance = instance
        self._deliver = deliver  # reactor.callFromThread in production
        self._on_event = on_event
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._stopping = threading.Event()
        self._stream: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        # daemon: a stream dockerd never closes must not keep the process alive on exit.
        self._thread = threading.Thread(
            target=self._thd_run, name="tmpnb-docker-events", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end and unblock its read (safe from any thread)."""
        self._stopping.set()
        stream = self._stream
        if stream is not None:
            try:
                stream.close()
            except Exception:
                pass  # the connection may already be gone; stopping is all that matters

    def _thd_run(self) -> None:
        delay = self._backoff_initial
        since: float | None = None  # after a reconnect, replay what was missed
        while not self._stopping.is_set():
            client = None
            try:
                client = self._client_factory()
                # Reconnecting with `since` replays what was missed, and the last event seen
                # once more: receivers treat a repeated "die" as the late event it is.
                self._stream = client.events(
                    decode=True,
                    since=since,
                    filters={"label": f"{INSTANCE_LABEL}={self._instance}", "type": "container"},
                )
                if self._stopping.is_set():  # stop() came before there was a stream to close
                    self._stream.close()
                    break
                self._deliver(self._log_connected)
                delay = self._backoff_initial
                for event in self._stream:
                    if self._stopping.is_set():
                        break
                    since = event.get("time", since)
                    ours = event_of(event, self._instance)
                    if ours is not None:
                        self._deliver(self._on_event, *ours)
                if not self._stopping.is_set():
                    self._deliver(self._log_lost, "stream ended", delay)
            except Exception as e:
                if not self._stopping.is_set():
                    self._deliver(self._log_lost, f"{type(e).__name__}: {e}", delay)
            finally:
                self._stream = None
                if client is not None:
                    try:
                        client.close()
                    except Exception:
                        pass
            if self._stopping.wait(delay):
                break
            delay = min(delay * 2, self._backoff_max)

    def _log_connected(self) -> None:
        log.info("following docker events of instance {instance}", instance=self._instance)

    def _log_lost(self, cause: str, retry_in: float) -> None:
        log.warn(
            "docker events stream lost ({cause}); reconnecting in {retry_in:.0f}s",
            cause=cause,
            retry_in=retry_in,
        )

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
