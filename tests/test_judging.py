"""The heartbeat's and the restart's decisions (tmpnb/judging.py), on plain data."""

from __future__ import annotations

from tmpnb.config import PoolConfig
from tmpnb.dockerapi import ContainerRecord
from tmpnb.judging import (
    ROUTE_ADDED_SLACK,
    Active,
    Cull,
    Idle,
    latest_activity,
    never_used,
    route_activity,
    routes_by_container,
    sort_leftovers,
    stray_routes,
    timestamp,
    verdict,
)

CONFIG = PoolConfig(cull_period=60.0, cull_timeout=600.0, cull_max=3600.0)
T0 = 1_795_000_000.0
ISO = "2026-11-18T11:06:40Z"  # T0


def seen(assigned_at: float | None = T0, last_activity: float | None = None, route_added_at: float | None = None):
    return {"assigned_at": assigned_at, "last_activity": last_activity, "route_added_at": route_added_at}


def test_timestamps_come_from_iso_times_with_a_z_or_an_offset_and_nothing_else() -> None:
    assert timestamp(ISO) == T0
    assert timestamp("2026-11-18T12:06:40+01:00") == T0
    assert timestamp("yesterday") is None
    assert timestamp(None) is None


def test_active_within_the_period_stays_assigned() -> None:
    assert verdict(T0, T0 + 100, T0 + 150, CONFIG) == Active(T0 + 100)


def test_nothing_during_the_last_period_is_idle_since_the_last_activity() -> None:
    assert verdict(T0, T0 + 100, T0 + 160, CONFIG) == Idle(T0 + 100)


def test_nothing_for_the_cull_timeout_is_culled_as_idle() -> None:
    assert verdict(T0, T0 + 100, T0 + 700, CONFIG) == Cull("idle: no activity for 600s")


def test_too_old_is_culled_however_active() -> None:
    assert verdict(T0, T0 + 3599, T0 + 3600, CONFIG) == Cull("too old: assigned 3600s ago")


def test_activity_is_the_latest_of_assignment_earlier_activity_route_and_server() -> None:
    route = {"last_activity": "2026-11-18T11:06:50Z"}  # T0 + 10
    status = {"last_activity": "2026-11-18T11:07:00Z"}  # T0 + 20
    assert latest_activity(seen(last_activity=T0 + 5), route, status) == T0 + 20
    assert latest_activity(seen(last_activity=T0 + 30), route, status) == T0 + 30
    assert latest_activity(seen(), None, None) == T0  # nothing heard: since it was assigned


def test_a_route_only_stamped_by_our_own_adding_is_not_the_visitors_activity() -> None:
    assert route_activity(T0 + ROUTE_ADDED_SLACK, route_added_at=T0) is None
    assert route_activity(T0 + ROUTE_ADDED_SLACK + 1, route_added_at=T0) == T0 + ROUTE_ADDED_SLACK + 1
    assert route_activity(T0, route_added_at=None) == T0


def test_a_server_never_used_shows_no_activity_since_its_start_no_connection_no_kernel() -> None:
    fresh = {"started": ISO, "last_activity": ISO, "connections": 0, "kernels": 0}
    assert never_used(fresh)
    assert not never_used(dict(fresh, last_activity="2026-11-18T11:07:00Z"))
    assert not never_used(dict(fresh, kernels=1))
    assert not never_used({})


def test_routes_are_found_by_the_container_they_lead_to() -> None:
    routes = {"/user/abc": {"container": "abc"}, "/user/def": {}}
    assert routes_by_container(routes) == {"abc": {"container": "abc"}, "def": {}}


def test_stray_routes_are_ours_or_unlabelled_under_user_and_lead_to_no_container_we_own() -> None:
    routes = {
        "/user/mine": {"instance": "here", "container": "mine"},
        "/user/gone": {"instance": "here", "container": "gone"},
        "/user/nolabel": {},
        "/user/theirs": {"instance": "elsewhere", "container": "theirs"},
        "/": {"instance": "here"},
    }
    assert stray_routes(routes, owned={"mine"}, instance="here") == ["/user/gone", "/user/nolabel"]


def record(container_id: str, created: float = T0) -> ContainerRecord:
    return ContainerRecord(f"docker-{container_id}", container_id, "token", created, True, "running", {})


def test_leftovers_marked_or_routed_or_used_are_visitors_and_the_never_used_are_pooled_again() -> None:
    fresh = {"started": ISO, "last_activity": ISO, "connections": 0, "kernels": 0}
    used = dict(fresh, last_activity="2026-11-18T11:07:00Z")
    records = [record(name) for name in ("marked", "routed", "used", "fresh", "silent")]
    assigned, unused = sort_leftovers(
        records,
        routed={"routed": {"assigned_at": T0 + 5}},
        marked={"marked": T0 + 1},
        statuses={"used": used, "fresh": fresh, "marked": fresh},  # "silent" did not answer
    )
    assert [(r.container_id, when) for r, when in assigned] == [("marked", T0 + 1), ("routed", T0 + 5), ("used", T0)]
    assert [r.container_id for r in unused] == ["fresh"]
