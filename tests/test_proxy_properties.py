"""Properties under hostile input: the route table, head parsing, and the whole protocol.

Whatever a visitor sends, the proxy answers a 4xx or forwards a well-formed request that
stays inside the route it matched; it never raises. With many visitors' routes (ids that are
prefixes of one another, percent-encoded, cased differently), a request reaches the route that
owns its path on a "/" boundary, or none: never another visitor's.
"""

from __future__ import annotations

from urllib.parse import unquote

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock

from tmpnb.proxy.framing import ChunkedTracker
from tmpnb.proxy.httphead import MAX_HEAD_BYTES, BadMessage, parse_request_head
from tmpnb.proxy.routes import RouteTable, resolve_request_path
from tmpnb.proxy.testing import ProxyHarness

segment = st.sampled_from(["user", "a", "b", "ab", "api", "static", "x y", "é"])
route_paths = st.lists(segment, min_size=0, max_size=4).map(lambda parts: "/" + "/".join(parts))
hostile_segment = st.sampled_from(
    ["a", "user", "..", ".", "%2e%2e", "%2E.", "%2f", "%2F..%2F", "%", "%zz", "%00", "%5c", "", "~", "%252e%252e", "a?b", "#"]
)
hostile_paths = st.lists(hostile_segment, min_size=0, max_size=8).map(lambda parts: "/" + "/".join(parts))


def longest_prefix(routes: set[str], path: str) -> str | None:
    """The specification of RouteTable.match, the slow and obvious way."""
    best = None
    for route in routes:
        if route == "/" or path == route or path.startswith(route + "/"):
            if best is None or len(route) > len(best):
                best = route
    return best


@given(st.sets(route_paths, max_size=8), st.lists(segment, max_size=6), st.booleans())
def test_match_is_the_longest_route_prefix_on_segment_boundaries(routes, parts, trailing_slash):
    table = RouteTable(Clock())
    for route in routes:
        table.add(route, {"target": "http://127.0.0.1:1" + route})
    path = "/" + "/".join(parts) + ("/" if trailing_slash and parts else "")
    expected = longest_prefix(routes, path.rstrip("/") or "/")
    found = table.match(path)
    assert (found[0] if found else None) == expected
    if found:
        assert found[1]["target"] == "http://127.0.0.1:1" + expected


@given(hostile_paths)
def test_a_path_the_parser_accepts_never_climbs_out_of_the_prefix_it_matches(path):
    raw = path.encode()
    try:
        head = parse_request_head(b"GET " + raw + b" HTTP/1.1\r\nHost: h")
    except BadMessage as refused:
        assert 400 <= refused.status < 500
        return
    decoded = unquote(head.path)
    assert ".." not in decoded.split("/") and "." not in decoded.split("/")
    # What the table resolves is the path the backend gets, character for character.
    assert resolve_request_path(head.path) is not None


@given(st.binary(max_size=400))
def test_any_bytes_as_a_head_parse_or_are_refused_with_a_4xx(data):
    try:
        parse_request_head(data)
    except BadMessage as refused:
        assert 400 <= refused.status < 500


request_lines = st.one_of(
    st.binary(max_size=60),
    st.builds(
        lambda method, path, version: method + b" " + path + b" " + version,
        st.sampled_from([b"GET", b"POST", b"G T", b"", b"\x00", b"GET\t", b"PUT"]),
        st.one_of(hostile_paths.map(str.encode), st.binary(max_size=30)),
        st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1 ", b"http/1.1", b"HTTP/1.10", b""]),
    ),
)
header_lines = st.one_of(
    st.binary(max_size=40),
    st.sampled_from(
        [
            b"Host: h",
            b"Host: h\r\nHost: i",
            b"Content-Length: 3",
            b"Content-Length: -1",
            b"Content-Length: 3, 4",
            b"Content-Length: 99999999999999999999999",
            b"Transfer-Encoding: chunked",
            b"Transfer-Encoding: gzip, chunked",
            b"Transfer-Encoding: chunked\r\nContent-Length: 3",
            b" folded: continuation",
            b"Name : space",
            b"X: a\x00b",
            b"Connection: upgrade\r\nUpgrade: websocket",
            b"X-Big: " + b"A" * (MAX_HEAD_BYTES + 1),
        ]
    ),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request_lines, st.lists(header_lines, max_size=6), st.binary(max_size=40), st.integers(1, 50))
def test_hostile_requests_get_a_4xx_or_are_forwarded_within_their_route_never_a_crash(line, headers, body, piece):
    harness = ProxyHarness()
    harness.routes.add("/user/a", {"target": harness.unix_target("a")})
    visitor = harness.visit()
    message = b"\r\n".join([line, *headers]) + b"\r\n\r\n" + body
    for start in range(0, len(message), piece):  # arrives in arbitrary pieces
        visitor.send(message[start : start + piece])
    answer = visitor.received()
    attempts = harness.attempts()
    if attempts:
        sent = harness.accept().received()
        target = sent.split(b" ")[1]
        assert resolve_request_path(target.decode()).startswith("/user/a")
        assert sent.count(b"\r\n\r\n") >= 1
    else:
        assert answer == b"" or answer[:10] in (b"HTTP/1.1 4",) or answer.startswith(b"HTTP/1.1 4"), answer[:80]


@given(st.lists(st.binary(min_size=1, max_size=300), max_size=6), st.binary(max_size=30), st.integers(1, 64))
def test_the_end_of_a_chunked_body_is_found_however_it_is_split(chunks, after, piece):
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    stream = body + after
    tracker = ChunkedTracker()
    consumed = 0
    for start in range(0, len(stream), piece):
        data = stream[start : start + piece]
        end = tracker.feed(data)
        if end >= 0:
            consumed += end
            break
        consumed += len(data)
    assert consumed == len(body)


@given(st.binary(max_size=200))
def test_a_chunked_tracker_fed_garbage_ends_or_refuses_with_400(data):
    assume(data)
    try:
        ChunkedTracker().feed(data)
    except BadMessage as refused:
        assert refused.status == 400


# --- many visitors: a request reaches the route that owns its path, or none

# Ids that are prefixes of one another and differ only in case: a naive prefix match
# (`path.startswith("/user/a")`) or a case-folding one sends a request to the wrong visitor.
visitor_ids = ["a", "ab", "abc", "b", "A", "aB", "a1"]


@st.composite
def id_segments(draw) -> str:
    """A visitor id as a browser (or an attacker) may write it: plain, percent-encoded, or cut."""
    name = draw(st.sampled_from(visitor_ids + ["", "abcd", "c"]))
    encoded = "".join(
        f"%{ord(char):02{draw(st.sampled_from(['x', 'X']))}}" if draw(st.booleans()) else char for char in name
    )
    return draw(st.sampled_from([name, encoded, name + "%2F", name + "%2f..", name.upper()]))


other_segments = st.sampled_from(["lab", "api", "", ".", "..", "%2e", "%2E%2e", "user", "User", "%75ser", "b", "x%20y"])


@st.composite
def request_paths(draw) -> str:
    parts = draw(st.lists(other_segments, max_size=2))
    parts += [draw(st.sampled_from(["user", "User", "%75ser", ""])), draw(id_segments())]
    parts += draw(st.lists(st.one_of(other_segments, id_segments()), max_size=4))
    path = "/" * draw(st.integers(1, 2)) + "/".join(parts) + draw(st.sampled_from(["", "/", "//"]))
    return path + draw(st.sampled_from(["", "?next=/user/b", "?x=%2e%2e"]))


def owner(raw_path: str, ids: set[str]) -> str | None:
    """The visitor whose route owns a path, written from the contract and not from the code:
    the path decoded once, dot segments resolved, leading slashes one; a route owns itself and
    everything below it on a "/" boundary, case and all."""
    decoded = unquote(raw_path.split("?", 1)[0])
    resolved: list[str] = []
    for segment in decoded.lstrip("/").split("/"):
        if segment == "..":
            if not resolved:
                return None
            resolved.pop()
        elif segment != ".":
            resolved.append(segment)
    path = "/" + "/".join(resolved)
    found = [name for name in ids if path == f"/user/{name}" or path.startswith(f"/user/{name}/")]
    assert len(found) <= 1  # no visitor route lies under another's
    return found[0] if found else None


ORCHESTRATOR = "http://127.0.0.1:9999"


@settings(max_examples=200, deadline=None)
@given(st.sets(st.sampled_from(visitor_ids), min_size=1), st.lists(request_paths(), min_size=1, max_size=6), st.booleans())
def test_every_request_reaches_the_route_that_owns_its_path_or_none_never_another_visitors(ids, paths, orchestrator):
    harness = ProxyHarness(default_target=ORCHESTRATOR if orchestrator else None)
    for name in ids:
        harness.routes.add(f"/user/{name}/", {"target": harness.unix_target(name)})
    for path in paths:
        request = b"GET " + path.encode() + b" HTTP/1.1\r\nHost: h\r\n\r\n"
        visitor = harness.visit()
        visitor.send(request)
        attempts = harness.attempts()
        assert len(attempts) <= 1
        if attempts:
            where = harness.accept().address
            reached = None if where == "127.0.0.1:9999" else where.split("/")[3]  # /run/test/<id>/jupyter.sock
        else:
            reached = None
        expected = owner(path, ids)
        try:
            parse_request_head(request[:-4])
        except BadMessage:
            assert not attempts and visitor.received().startswith(b"HTTP/1.1 4")  # refused: no route at all
            continue
        assert reached == expected, (path, reached, expected)
        if expected is None and not orchestrator:
            assert visitor.received().startswith(b"HTTP/1.1 404")
