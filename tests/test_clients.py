"""The client gate's parts alone (tmpnb/clients/): the accounts on a Clock, the token bucket,
whose X-Forwarded-For is believed, the Sec-Fetch rules, and the reload cookie."""

from __future__ import annotations

import pytest
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.python.usage import UsageError
from twisted.web.test.requesthelper import DummyRequest

from tmpnb.clients import make_gate
from tmpnb.clients.address import LOCAL, TrustedProxies, address_key, client_address, parse_ip
from tmpnb.clients.bucket import TokenBucket
from tmpnb.clients.fetchmeta import API, PAGE, may_hand_out
from tmpnb.clients.returning import ServerCookies, cookie_name
from tmpnb.clients.shares import RATE, SHARE, ClientShares, SharePolicy
from tmpnb.metrics import Metrics
from tmpnb.settings import client_policy, trusted_proxies
from tmpnb.states import Assignment
from tmpnb.tap import Options, makeService


class FakeTicket:
    """What the accounts read of a tmpnb.tickets.Ticket; the test moves its state."""

    def __init__(self, ticket_id: str) -> None:
        self.id = ticket_id
        self.state = "waiting"
        self.assignment: Assignment | None = None

    def claim(self, container_id: str) -> Assignment:
        self.state = "claimed"
        self.assignment = Assignment(container_id, f"/user/{container_id}/", "tok")
        return self.assignment


def accounts(capacity: int = 8, **policy) -> tuple[Clock, ClientShares]:
    clock = Clock()
    clock.advance(1000)
    return clock, ClientShares(clock, capacity, SharePolicy(**policy), retry_after=5)


# -- the accounts -----------------------------------------------------------------------


@pytest.mark.parametrize(("capacity", "share", "limit"), [(8, 0.25, 2), (30, 0.25, 7), (3, 0.25, 1), (1, 0.25, 1),
                                                          (20, 1.0, 20), (10, 0.5, 5), (100, 0.01, 1)])
def test_the_share_is_a_fraction_of_the_capacity_and_at_least_one(capacity, share, limit):
    assert SharePolicy(share=share).limit(capacity) == limit


def test_an_address_at_its_share_is_refused_and_another_address_is_not():
    clock, shares = accounts(capacity=8)
    for n in range(2):
        assert shares.admit("192.0.2.1") is None
        shares.took("192.0.2.1", FakeTicket(f"t{n}"))
    verdict = shares.admit("192.0.2.1")
    assert verdict is not None and verdict.reason == SHARE and (verdict.held, verdict.limit) == (2, 2)
    assert shares.admit("192.0.2.2") is None


def test_tickets_that_end_without_a_container_stop_counting():
    clock, shares = accounts(capacity=8)
    first, second = FakeTicket("t1"), FakeTicket("t2")
    shares.took("a", first)
    shares.took("a", second)
    assert shares.admit("a").reason == SHARE
    first.state = "left"  # the visitor hung up in line
    assert shares.held("a") == 1 and shares.admit("a") is None
    second.state = "failed"
    assert shares.held("a") == 0


def test_a_claimed_container_counts_until_it_is_culled():
    clock, shares = accounts(capacity=8)
    ticket = FakeTicket("t1")
    shares.took("a", ticket)
    shares.claimed(ticket, ticket.claim("c1"))
    assert shares.held("a") == 1
    assert shares.holding("c1").path == "/user/c1/"
    shares.record({"container": "c1", "from": "assigned", "to": "idle"})
    assert shares.held("a") == 1
    shares.record({"container": "c1", "from": "idle", "to": "culled"})
    assert shares.held("a") == 0 and shares.holding("c1") is None


def test_a_ticket_claimed_without_telling_the_accounts_becomes_its_container():
    clock, shares = accounts(capacity=8)
    ticket = FakeTicket("t1")
    shares.took("a", ticket)
    ticket.claim("c7")
    assert shares.held("a") == 1
    shares.ended("c7")
    assert shares.held("a") == 0


def test_the_spawn_rate_is_a_token_bucket_with_a_burst():
    clock, shares = accounts(capacity=1000, share=1.0, spawns_per_minute=6, burst=3)
    for n in range(3):
        assert shares.admit("a") is None
        ticket = FakeTicket(f"t{n}")
        shares.took("a", ticket)
        ticket.state = "left"  # holding nothing: only the rate can refuse
    verdict = shares.admit("a")
    assert verdict.reason == RATE and verdict.retry_after == pytest.approx(10.0)
    clock.advance(9.9)
    assert shares.admit("a").reason == RATE
    clock.advance(0.1)
    assert shares.admit("a") is None
    assert shares.admit("b") is None  # every address has its own bucket


def test_a_refusal_takes_nothing_from_the_bucket():
    clock, shares = accounts(capacity=4, share=0.25, spawns_per_minute=1, burst=2)
    ticket = FakeTicket("t0")
    shares.took("a", ticket)
    for _ in range(50):
        assert shares.admit("a").reason == SHARE
    ticket.state = "left"
    assert shares.admit("a") is None  # one token left: the refusals spent none


def test_idle_addresses_are_forgotten():
    clock, shares = accounts(capacity=8, spawns_per_minute=60, burst=2)
    ticket = FakeTicket("t")
    shares.took("a", ticket)
    ticket.claim("c1")
    shares.claimed(ticket, ticket.assignment)
    clock.advance(60)
    shares.ended("c1")
    assert shares.addresses() == []


def test_accounts_nobody_asks_about_again_are_swept_as_new_ones_come():
    clock, shares = accounts(capacity=8, spawns_per_minute=60, burst=5)
    for n in range(1000):
        ticket = FakeTicket(f"t{n}")
        shares.took(f"10.0.{n // 250}.{n % 250}", ticket)
        ticket.state = "left"
        clock.advance(5)  # the bucket is full again by the next sweep
    assert len(shares.addresses()) <= 2 * 64 + 1


def test_bucket_refills_to_its_burst_and_no_further():
    bucket = TokenBucket(rate=1.0, burst=2, now=0.0)
    assert bucket.take(0.0) and bucket.take(0.0) and not bucket.take(0.0)
    assert bucket.wait(0.0) == pytest.approx(1.0)
    assert bucket.level(100.0) == 2 and bucket.full(100.0)
    assert bucket.level(50.0) == 2  # time never runs backwards


def test_policy_values_no_service_can_run_with_are_refused():
    for bad in (SharePolicy(share=0), SharePolicy(share=1.5), SharePolicy(spawns_per_minute=0), SharePolicy(burst=0)):
        with pytest.raises(ValueError):
            bad.check()
    SharePolicy().check()


# -- whose X-Forwarded-For is believed --------------------------------------------------


def request(peer=None, xff: list[str] = (), headers: dict[str, str] | None = None) -> DummyRequest:
    r = DummyRequest([b""])
    r.client = peer
    for line in xff:
        r.requestHeaders.addRawHeader(b"X-Forwarded-For", line.encode())
    for name, value in (headers or {}).items():
        r.requestHeaders.addRawHeader(name.encode(), value.encode())
    return r


def tcp(host: str) -> IPv4Address | IPv6Address:
    return IPv6Address("TCP", host, 5555) if ":" in host else IPv4Address("TCP", host, 5555)


PROXIES = TrustedProxies.parse(["10.0.0.0/8", "2001:db8:aa::/48"])


def test_an_untrusted_peer_is_the_client_whatever_it_forwards():
    assert client_address(request(tcp("203.0.113.9"), ["198.51.100.1"]), PROXIES) == "203.0.113.9"
    assert client_address(request(tcp("203.0.113.9")), PROXIES) == "203.0.113.9"


def test_behind_a_trusted_proxy_the_rightmost_untrusted_entry_is_the_client():
    # The visitor wrote "1.1.1.1"; the first proxy (10.0.0.2) appended what it saw, 203.0.113.7.
    r = request(tcp("10.0.0.1"), ["1.1.1.1, 203.0.113.7, 10.0.0.2"])
    assert client_address(r, PROXIES) == "203.0.113.7"


def test_a_header_sent_on_several_lines_is_read_as_one_list_in_order():
    r = request(tcp("10.0.0.1"), ["1.1.1.1", "203.0.113.7"])
    assert client_address(r, PROXIES) == "203.0.113.7"


def test_our_own_proxy_over_a_unix_socket_is_trusted_but_loopback_entries_are_not():
    # The embedded proxy appends the address of the socket it accepted: a visitor on
    # 127.0.0.2 who sends X-Forwarded-For: 127.0.0.3 is still 127.0.0.2.
    unix = UNIXAddress(b"/run/tmpnb/tmpnb.web.sock")
    assert client_address(request(unix, ["127.0.0.3, 127.0.0.2"]), TrustedProxies()) == "127.0.0.2"
    assert client_address(request(unix), TrustedProxies()) == LOCAL


def test_a_loopback_peer_is_our_proxy_hop_unless_told_otherwise():
    r = request(tcp("127.0.0.1"), ["203.0.113.7"])
    assert client_address(r, TrustedProxies()) == "203.0.113.7"
    assert client_address(r, TrustedProxies(local_peer=False)) == "127.0.0.1"


def test_garbage_in_the_header_is_never_a_client_address():
    r = request(tcp("10.0.0.1"), ["203.0.113.7, not-an-address, 10.0.0.2"])
    assert client_address(r, PROXIES) == "10.0.0.2"  # the last address a trusted proxy wrote
    assert client_address(request(tcp("10.0.0.1"), ["<script>"]), PROXIES) == "10.0.0.1"


def test_every_hop_trusted_gives_the_leftmost():
    assert client_address(request(tcp("10.0.0.1"), ["10.9.9.9, 10.0.0.2"]), PROXIES) == "10.9.9.9"


def test_ipv6_clients_count_by_their_slash_64_and_mapped_ipv4_as_ipv4():
    a = client_address(request(tcp("2001:db8:1:2:aaaa::1")), PROXIES)
    b = client_address(request(tcp("2001:db8:1:2:bbbb::9")), PROXIES)
    assert a == b == "2001:db8:1:2::/64"
    assert client_address(request(tcp("2001:db8:1:3::1")), PROXIES) != a
    assert client_address(request(tcp("::ffff:203.0.113.5")), PROXIES) == "203.0.113.5"
    assert client_address(request(tcp("2001:db8:aa::5"), ["[2001:db8:ff::1]:4444"]), PROXIES) == "2001:db8:ff::/64"


def test_addresses_as_proxies_write_them():
    assert str(parse_ip("192.0.2.1:8080")) == "192.0.2.1"
    assert str(parse_ip("[2001:db8::1]:80")) == "2001:db8::1"
    assert parse_ip("unknown") is None and parse_ip("") is None and parse_ip("1.2.3.4.5") is None
    assert address_key(parse_ip("192.0.2.1")) == "192.0.2.1"


def test_trusted_proxies_are_cidrs():
    with pytest.raises(ValueError):
        TrustedProxies.parse(["10.0.0.0/33"])
    with pytest.raises(ValueError):
        TrustedProxies.parse(["proxy.example.org"])
    assert TrustedProxies.parse(["192.0.2.7"]).trusts(parse_ip("192.0.2.7"))


# -- Sec-Fetch --------------------------------------------------------------------------


def fetch(dest: str | None, mode: str | None, **more: str) -> DummyRequest:
    headers = {}
    if dest is not None:
        headers["Sec-Fetch-Dest"] = dest
    if mode is not None:
        headers["Sec-Fetch-Mode"] = mode
    headers.update({k.replace("_", "-"): v for k, v in more.items()})
    return request(tcp("203.0.113.1"), headers=headers)


@pytest.mark.parametrize(("dest", "mode"), [("document", "navigate"), ("iframe", "navigate"),
                                            ("frame", "navigate"), ("iframe", "nested-navigate"),
                                            (None, None), ("document", None), (None, "navigate")])
def test_navigations_and_clients_without_fetch_metadata_get_a_page(dest, mode):
    assert may_hand_out(fetch(dest, mode), PAGE)
    assert may_hand_out(fetch(dest, mode), API)


@pytest.mark.parametrize(("dest", "mode"), [("image", "no-cors"), ("script", "no-cors"), ("style", "no-cors"),
                                            ("empty", "no-cors"), ("empty", "cors"), ("image", None),
                                            (None, "no-cors"), ("object", "navigate"), ("embed", "navigate"),
                                            ("document", "cors"), ("font", "cors"), ("audio", "no-cors"),
                                            ("worker", "same-origin"), ("empty", "websocket")])
def test_subresources_get_no_page(dest, mode):
    assert not may_hand_out(fetch(dest, mode), PAGE)


def test_the_api_takes_a_cors_fetch_as_thebe_makes_but_no_subresource():
    assert may_hand_out(fetch("empty", "cors"), API)
    assert may_hand_out(fetch("empty", "same-origin"), API)
    assert may_hand_out(fetch(None, "cors"), API)
    assert not may_hand_out(fetch("empty", "no-cors"), API)  # fetch(…, {mode: "no-cors"}): blind
    assert not may_hand_out(fetch("image", "no-cors"), API)
    assert not may_hand_out(fetch("script", "cors"), API)


def test_prefetches_and_prerenders_get_nothing():
    assert not may_hand_out(fetch("document", "navigate", Sec_Purpose="prefetch;prerender"), PAGE)
    assert not may_hand_out(fetch("document", "navigate", Sec_Purpose="prefetch"), PAGE)
    assert not may_hand_out(fetch(None, None, Purpose="prefetch"), PAGE)
    assert not may_hand_out(fetch(None, None, X_Moz="prefetch"), API)


def test_header_values_are_compared_without_case_or_spaces():
    assert may_hand_out(fetch(" Document", "NAVIGATE "), PAGE)
    assert not may_hand_out(fetch("IMAGE", "No-Cors"), PAGE)


# -- the reload cookie ------------------------------------------------------------------


def test_the_cookie_names_a_container_only_under_our_secret():
    cookies = ServerCookies(b"s" * 32)
    value = cookies.value("AbC123")
    assert cookies.container(value) == "AbC123"
    other = ServerCookies(b"t" * 32)
    assert other.container(value) is None  # another instance's (or an earlier run's) cookie
    mac = value.split(".")[1]
    for forged in ("XyZ789." + mac, "AbC123." + "0" * 32, "AbC123", "AbC123." + mac.upper(), "",
                   "AbC123." + mac + "0", "../x." + mac, "AbC123.." + mac):
        assert cookies.container(forged) is None, forged


def test_the_cookie_is_host_locked_over_https():
    assert cookie_name(True) == b"__Host-tmpnb-server"
    assert cookie_name(False) == b"tmpnb-server"


# -- the options ------------------------------------------------------------------------


def parse(*argv: str) -> Options:
    options = Options()
    options.parseOptions(list(argv))
    return options


def test_the_default_share_is_a_quarter_with_a_rate_no_visitor_meets():
    options = parse()
    assert client_policy(options) == SharePolicy(share=0.25, spawns_per_minute=12.0, burst=20)
    assert trusted_proxies(options) == TrustedProxies()


def test_trusted_proxies_repeat_and_a_classroom_raises_the_share():
    options = parse("--trusted-proxy=10.0.0.0/8", "--trusted-proxy", "2001:db8::1", "--client-share=0.5",
                    "--client-spawn-rate=60", "--client-spawn-burst=40")
    assert [str(n) for n in trusted_proxies(options).networks] == ["10.0.0.0/8", "2001:db8::1/128"]
    assert client_policy(options) == SharePolicy(share=0.5, spawns_per_minute=60.0, burst=40)


@pytest.mark.parametrize("argv", [["--client-share=0"], ["--client-share=2"], ["--client-spawn-rate=0"],
                                  ["--client-spawn-burst=0"], ["--trusted-proxy=everyone"],
                                  ["--trusted-proxy=10.0.0.0/40"]])
def test_nonsense_is_refused_at_parse_time(argv):
    with pytest.raises(UsageError):
        parse(*argv)


def test_the_service_shows_each_address_s_share_and_its_refusals_in_the_stats(tmp_path):
    options = parse(f"--socket-root={tmp_path}", "--instance=tfair", "--capacity=8")
    top = makeService(options, reactor=MemoryReactorClock(), environ={})
    pool = top.getServiceNamed("pool")
    assert pool.stats()["clients"] == {"limit": 2, "spawns_per_minute": 12.0, "burst": 20, "addresses": 0,
                                       "most_held": 0, "refused": {}}


def test_refusals_are_counted_by_reason_for_the_metrics():
    metrics = Metrics(Clock())
    gate = make_gate(Clock(), 4, on_refused=lambda reason: metrics.client_refusals.labels(reason=reason).inc())
    _, refusal = gate.check(fetch("image", "no-cors"), PAGE)
    assert refusal.reason == "not-navigation" and refusal.retry_after == 0
    assert metrics.registry.get_sample_value("tmpnb_client_refusals_total", {"reason": "not-navigation"}) == 1
    assert gate.stats()["refused"] == {"not-navigation": 1}


def test_a_private_address_at_its_share_hints_at_trusted_proxies_once(logged):
    gate = make_gate(Clock(), 4, trusted=TrustedProxies(local_peer=False))
    ticket = FakeTicket("t")
    address, _ = gate.check(request(tcp("10.1.2.3")), PAGE)
    gate.took(address, ticket)
    for _ in range(3):
        assert gate.check(request(tcp("10.1.2.3")), PAGE)[1].reason == SHARE
    hints = [e for e in logged if "--trusted-proxy" in e.get("log_format", "")]
    assert len(hints) == 1 and hints[0]["address"] == "10.1.2.3"


def test_a_share_of_one_leaves_the_limit_to_the_capacity():
    clock, shares = accounts(capacity=2, share=1.0)
    for n in range(5):
        shares.took("a", FakeTicket(f"t{n}"))
    assert shares.admit("a") is None  # the waiting line answers No vacancy, not the gate
