"""The route table: CHP's path rules, longest-prefix matching, safe decoding, last activity."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.task import Clock

from tmpnb.proxy.routes import RouteTable, format_activity, normalize_route_path, resolve_request_path

# 2026-11-22T00:56:53.123Z
NOW = 1795309013.123


def table_at(now: float = NOW) -> tuple[RouteTable, Clock]:
    clock = Clock()
    clock.advance(now)
    return RouteTable(clock), clock


# --- paths are kept as CHP keeps them


def test_route_paths_get_a_leading_slash_and_lose_the_trailing_one():
    assert normalize_route_path("/user/abc/") == "/user/abc"
    assert normalize_route_path("user/abc") == "/user/abc"
    assert normalize_route_path("/") == "/"
    assert normalize_route_path("") == "/"


def test_a_route_added_with_a_trailing_slash_is_found_without_it():
    routes, _ = table_at()
    routes.add("/user/abc/", {"target": "http://127.0.0.1:9000"})
    assert routes.get("/user/abc") == {"target": "http://127.0.0.1:9000", "last_activity": "2026-11-22T00:56:53.123Z"}
    assert list(routes.all()) == ["/user/abc"]


def test_route_data_is_kept_as_given_plus_last_activity():
    routes, _ = table_at()
    routes.add("/user/abc", {"target": "http+unix://%2Frun%2Fx.sock", "user": "abc", "n": 3})
    assert routes.get("/user/abc") == {
        "target": "http+unix://%2Frun%2Fx.sock",
        "user": "abc",
        "n": 3,
        "last_activity": "2026-11-22T00:56:53.123Z",
    }


def test_the_caller_cannot_set_last_activity_nor_change_stored_data_afterwards():
    routes, _ = table_at()
    data = {"target": "http://a", "last_activity": "1999-01-01T00:00:00.000Z"}
    routes.add("/a", data)
    data["target"] = "http://changed"
    assert routes.get("/a") == {"target": "http://a", "last_activity": "2026-11-22T00:56:53.123Z"}


def test_adding_an_existing_route_replaces_it_and_resets_its_activity():
    routes, clock = table_at()
    routes.add("/a", {"target": "http://one", "extra": 1})
    clock.advance(5)
    routes.add("/a", {"target": "http://two"})
    assert routes.get("/a") == {"target": "http://two", "last_activity": format_activity(NOW + 5)}


def test_remove_says_whether_there_was_a_route():
    routes, _ = table_at()
    routes.add("/a", {"target": "http://a"})
    assert routes.remove("/a/") is True
    assert routes.remove("/a") is False
    assert routes.get("/a") is None
    assert len(routes) == 0


# --- last activity


def test_last_activity_is_written_like_javascripts_toISOString():
    assert format_activity(0) == "1970-01-01T00:00:00.000Z"
    assert format_activity(NOW) == "2026-11-22T00:56:53.123Z"
    assert format_activity(59.9996) == "1970-01-01T00:01:00.000Z"


def test_inactive_since_compares_whole_milliseconds_so_a_shown_time_is_an_exact_cutoff():
    routes, clock = table_at()
    routes.add("/a", {"target": "http://a"})
    clock.advance(0.05)
    routes.add("/b", {"target": "http://b"})
    shown = datetime.fromisoformat(routes.get("/b")["last_activity"]).timestamp()
    assert list(routes.all(inactive_since=shown)) == ["/a"]


def test_touch_moves_last_activity_to_now():
    routes, clock = table_at()
    routes.add("/user/abc", {"target": "http://a"})
    clock.advance(61.5)
    routes.touch("/user/abc")
    assert routes.last_activity("/user/abc") == pytest.approx(NOW + 61.5, abs=0.001)
    assert routes.get("/user/abc")["last_activity"] == format_activity(NOW + 61.5)


def test_touching_a_route_that_is_gone_does_nothing():
    routes, _ = table_at()
    routes.touch("/user/gone")
    assert routes.all() == {}


def test_all_with_inactive_since_keeps_only_routes_idle_before_that_time():
    routes, clock = table_at()
    routes.add("/idle", {"target": "http://a"})
    clock.advance(100)
    routes.add("/busy", {"target": "http://b"})
    assert list(routes.all(inactive_since=NOW + 50)) == ["/idle"]
    # strictly before, as CHP compares with "<"
    assert list(routes.all(inactive_since=NOW)) == []
    assert sorted(routes.all()) == ["/busy", "/idle"]


# --- matching


def test_the_longest_prefix_wins_on_slash_boundaries():
    routes, _ = table_at()
    routes.add("/", {"target": "http://default"})
    routes.add("/user/abc", {"target": "http://abc"})
    routes.add("/user/abc/proxy", {"target": "http://inner"})
    assert routes.match("/user/abc/tree/x.ipynb") == ("/user/abc", {"target": "http://abc"})
    assert routes.match("/user/abc/proxy/8080/") == ("/user/abc/proxy", {"target": "http://inner"})
    assert routes.match("/user/abc") == ("/user/abc", {"target": "http://abc"})
    assert routes.match("/user/abcd/tree") == ("/", {"target": "http://default"})
    assert routes.match("/") == ("/", {"target": "http://default"})


def test_without_a_root_route_an_unknown_path_matches_nothing():
    routes, _ = table_at()
    routes.add("/user/abc", {"target": "http://abc"})
    assert routes.match("/user/xyz/") is None
    assert routes.match("/") is None


def test_match_ignores_the_query_and_accepts_bytes():
    routes, _ = table_at()
    routes.add("/user/abc", {"target": "http://abc"})
    assert routes.match(b"/user/abc/api/status?token=x/../../y") == ("/user/abc", {"target": "http://abc"})


def test_percent_encoding_is_decoded_once():
    routes, _ = table_at()
    routes.add("/user/a b", {"target": "http://space"})
    routes.add("/user/%41", {"target": "http://literal"})
    assert routes.match("/user/a%20b/tree")[0] == "/user/a b"
    # "%2541" decodes once to the literal "%41", never on to "A"
    assert routes.match("/user/%2541/")[0] == "/user/%41"


def test_dot_segments_are_resolved_before_matching():
    routes, _ = table_at()
    routes.add("/user/abc", {"target": "http://abc"})
    routes.add("/user/xyz", {"target": "http://xyz"})
    assert routes.match("/user/xyz/../abc/tree")[0] == "/user/abc"
    assert routes.match("/user/xyz/%2e%2e/abc/")[0] == "/user/abc"
    assert routes.match("/user/./abc")[0] == "/user/abc"
    assert routes.match("//user/abc//")[0] == "/user/abc"  # leading and trailing slashes collapse


def test_an_empty_segment_is_part_of_a_route_as_in_chp():
    # JupyterHub adds /user//x for a user whose name is empty before "/x"; CHP keeps it apart.
    routes, _ = table_at()
    routes.add("/user//x/", {"target": "http://empty"})
    routes.add("/user/x", {"target": "http://x"})
    assert list(routes.all()) == ["/user//x", "/user/x"]
    assert routes.match("/user//x/lab")[0] == "/user//x"
    assert routes.match("/user/x/lab")[0] == "/user/x"
    assert routes.match("/user///x") is None


def test_a_path_that_climbs_above_the_root_matches_nothing():
    routes, _ = table_at()
    routes.add("/", {"target": "http://default"})
    assert routes.match("/../etc/passwd") is None
    assert routes.match("/user/%2e%2e/%2e%2e/x") is None
    assert routes.match("/a/%00/b") is None


def test_resolve_request_path_keeps_the_trailing_slash_for_the_backend():
    assert resolve_request_path("/user/abc/") == "/user/abc/"
    assert resolve_request_path("/user/abc") == "/user/abc"
    assert resolve_request_path("/user/abc/tree/..") == "/user/abc/"
    assert resolve_request_path("") == "/"


segment = st.text(alphabet="ab./%2e", min_size=0, max_size=4)


@given(st.lists(segment, max_size=6))
def test_a_match_is_always_a_prefix_of_the_resolved_path_on_a_boundary(parts):
    routes, _ = table_at()
    for prefix in ("/", "/a", "/a/b", "/b/a.", "/%2e"):
        routes.add(prefix, {"target": prefix})
    raw = "/" + "/".join(parts)
    found = routes.match(raw)
    resolved = resolve_request_path(raw)
    if resolved is None:
        assert found is None
        return
    assert found is not None  # "/" catches everything that stays inside
    prefix, data = found
    assert data == {"target": prefix}
    assert prefix == "/" or resolved == prefix or resolved.startswith(prefix + "/")
    assert ".." not in resolved.split("/")
