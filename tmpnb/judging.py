"""What the heartbeat and a restart decide about a container, from what they were told.

Pure functions over plain data: the pool (tmpnb/pool.py) gathers the facts (Docker's
listing, the proxy's routes, the servers' api/status answers) and acts on the verdicts.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tmpnb.config import PoolConfig
from tmpnb.states import ContainerInputs

# A proxy stamps last_activity when a route is added; that instant (and the proxy's clock
# being a little behind or ahead of ours) is not the visitor's activity.
ROUTE_ADDED_SLACK = 2.0


def timestamp(iso: object) -> float | None:
    """Seconds since the epoch from an ISO 8601 time (CHP's and jupyter's last_activity)."""
    if not isinstance(iso, str):
        return None
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def never_used(status: dict[str, Any]) -> bool:
    """Whether a server's api/status shows no visitor ever did anything (status and
    readiness requests are not counted as activity by jupyter_server)."""
    started, last = timestamp(status.get("started")), timestamp(status.get("last_activity"))
    idle_since_start = started is not None and last is not None and last - started < 0.5
    return idle_since_start and not status.get("connections") and not status.get("kernels")


def route_activity(last_activity: float | None, route_added_at: float | None) -> float | None:
    """The route's last_activity, unless it only records our own (re)adding of the route:
    otherwise every restart, or every restore after an external proxy lost its routes,
    would count as the visitor's activity and keep an idle container alive until cull_max."""
    if last_activity is None or route_added_at is None:
        return last_activity
    return last_activity if last_activity > route_added_at + ROUTE_ADDED_SLACK else None


def route_container(path: str, data: dict) -> str:
    """The container a route of the proxy leads to (its id is the path's end)."""
    return str(data.get("container") or path.rsplit("/", 1)[-1])


def routes_by_container(routes: dict[str, dict]) -> dict[str, dict]:
    """The proxy's routes keyed by the container they lead to."""
    return {route_container(path, data): data for path, data in routes.items()}


def latest_activity(seen: dict[str, Any], route: dict | None, status: dict | None) -> float:
    """A handed-out container's activity: the latest of when it was assigned, the activity
    the heartbeat saw before, the proxy route's last_activity and the server's own."""
    from_route = route_activity(timestamp((route or {}).get("last_activity")), seen["route_added_at"])
    from_server = timestamp((status or {}).get("last_activity"))
    times = [seen["assigned_at"], seen["last_activity"], from_route, from_server]
    return max(t for t in times if t is not None)


@dataclass(frozen=True)
class Cull:
    reason: str

    def apply(self, machine: ContainerInputs) -> None:
        machine.cull(self.reason)


@dataclass(frozen=True)
class Idle:
    since: float

    def apply(self, machine: ContainerInputs) -> None:
        machine.idle(self.since)


@dataclass(frozen=True)
class Active:
    when: float

    def apply(self, machine: ContainerInputs) -> None:
        machine.activity(self.when)


Verdict = Cull | Idle | Active


def verdict(assigned_at: float | None, activity: float, now: float, config: PoolConfig) -> Verdict:
    """Culled when too old or idle too long; idle when nothing happened during the last
    period; assigned (active) otherwise. Too old wins over everything."""
    if assigned_at is not None and now - assigned_at >= config.cull_max:
        return Cull(f"too old: assigned {now - assigned_at:.0f}s ago")
    if now - activity >= config.cull_timeout:
        return Cull(f"idle: no activity for {now - activity:.0f}s")
    if now - activity >= config.cull_period:
        return Idle(activity)
    return Active(activity)


def settled_without_status(seen: dict[str, Any], route: dict | None, now: float, config: PoolConfig) -> Verdict | None:
    """The verdict on a handed-out container that its server's api/status cannot change, or
    None when it could. The server's activity can only make a container more recently
    active: one active on what the proxy and earlier heartbeats saw stays active, one too
    old is culled whatever it did. Only the others need their server asked (at 20,000
    containers each ask is ≈75 µs of the reactor's CPU: benchmarks/scale.py)."""
    return settled_on(seen, latest_activity(seen, route, None), now, config)


def settled_on(seen: dict[str, Any], known: float, now: float, config: PoolConfig) -> Verdict | None:
    """settled_without_status, given `known`: latest_activity(seen, route, None)."""
    assigned_at = seen["assigned_at"]
    if assigned_at is not None and now - assigned_at >= config.cull_max:
        return verdict(assigned_at, now, now, config)
    return Active(known) if now - known < config.cull_period else None


def changes_anything(seen: dict[str, Any], verdict: Verdict) -> bool:
    """Whether giving `verdict` to the machine `seen` describes would change it: an active
    container seen active with no newer activity, or an idle one seen idle, would only loop.
    The heartbeat skips those inputs (each costs the machine a lookup; at 20,000 containers
    a sweep gives thousands)."""
    state = seen["state"]
    if isinstance(verdict, Active):
        return state != "assigned" or verdict.when > (seen["last_activity"] or 0)
    if isinstance(verdict, Idle):
        return state != "idle"
    return True


def stray_routes(routes: dict[str, dict], owned: Collection[str], instance: str) -> list[str]:
    """Routes under /user/ that lead to no container we own: ours, or carrying no instance
    at all (they point nowhere). Routes another tmpnb instance labelled are never ours."""
    return [path for path, data in routes.items() if is_stray(path, data, owned, instance)]


def is_stray(path: str, data: dict, owned: Collection[str], instance: str) -> bool:
    """Whether one route is stray (see stray_routes)."""
    return (
        path.startswith("/user/")
        and data.get("instance", instance) == instance
        and str(data.get("container") or path[len("/user/"):]) not in owned
    )


def sort_leftovers(
    records: Sequence[Any], routed: dict[str, dict], marked: dict[str, float | None], statuses: dict[str, dict]
) -> tuple[list[tuple[Any, float]], list[Any]]:
    """An earlier run's running containers (`records`: tmpnb.dockerapi.ContainerRecord), sorted
    for adoption: (visitors' ones with when each was assigned, never used ones). A container
    marked as assigned is a visitor's, opened or not; so is one with a route of ours; without
    either, its server's status decides: never used → unused, used → a visitor's whose route
    was lost. A container in neither list (its server did not answer) is to be removed."""
    assigned: list[tuple[Any, float]] = []
    unused: list[Any] = []
    for record in records:
        status = statuses.get(record.container_id)
        route = routed.get(record.container_id)
        if record.container_id in marked:  # handed out, opened or not: never pooled again
            when = marked[record.container_id] or (route or {}).get("assigned_at") or record.created
            assigned.append((record, float(when)))
        elif route is not None:
            assigned.append((record, float(route.get("assigned_at") or record.created)))
        elif status is not None and never_used(status):
            unused.append(record)
        elif status is not None:
            assigned.append((record, timestamp(status.get("started")) or record.created))
    return assigned, unused
