"""Readers of an article, simulated: when they arrive, and what each one does.

The day after a publication, readers arrive as a Poisson stream whose rate climbs, peaks and
tails off (`ArticleDay`, `arrivals`). Each reader is a browser without JavaScript
(`read_article`): it goes through the front door following redirects and the waiting line,
loads the notebook page, starts a kernel, runs the welcome cells (the slider of the second is
moved once: ipywidgets comm messages), thinks, sometimes runs more, and leaves as a closed tab
does: it stops all traffic. Nothing here knows how many hosts serve it; benchmarks/nature.py
runs the day and adds up the outcomes.

Twisted all the way: treq for HTTP, twisted.web.websocket (wsproto) for the kernel's channels.
"""

from __future__ import annotations

import json
import math
import random
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater

# The welcome notebook's code cells (tmpnb/image/Welcome.ipynb) and what they print.
HELLO_CELL = 'import sys\nprint(f"Hello from Python {sys.version.split()[0]}!")\nsum(n * n for n in range(10))'
SLIDER_CELL = (
    "from ipywidgets import interact\n\n@interact(n=(1, 20))\n"
    "def squares(n=5):\n    print([k * k for k in range(1, n + 1)])"
)
SLIDER_TO = 7
SLIDER_PRINTS = str([k * k for k in range(1, SLIDER_TO + 1)])

USER_PATH = re.compile(r"^/user/([A-Za-z0-9]+)/")
META_REFRESH = re.compile(
    r"""<meta\s+http-equiv=["']?refresh["']?\s+content=["']\s*(\d+(?:\.\d+)?)\s*(?:;\s*url=([^"']*))?["']""",
    re.IGNORECASE,
)
BROWSER_HEADERS = {"Accept": ["text/html,application/xhtml+xml"], "Sec-Fetch-Mode": ["navigate"],
                   "Sec-Fetch-Dest": ["document"]}
MAX_HOPS = 400
RECONNECT_DELAYS = (1, 2, 4, 8, 16)  # then one last try  # redirects and waiting-page refreshes before a reader gives up


# -- when readers arrive ------------------------------------------------------------------------


@dataclass(frozen=True)
class ArticleDay:
    """The arrival rate (readers a second) over a run of `minutes`, as after a publication: a
    linear climb to `peak_rate` over the first `climb` of the run, the peak held until
    `peak_end`, then an exponential tail down to `tail_floor` × peak at the end."""

    minutes: float
    peak_rate: float
    climb: float = 0.15
    peak_end: float = 0.4
    tail_floor: float = 0.05

    @property
    def seconds(self) -> float:
        return self.minutes * 60.0

    def rate(self, t: float) -> float:
        if t < 0 or t >= self.seconds:
            return 0.0
        x = t / self.seconds
        if x < self.climb:
            return self.peak_rate * x / self.climb
        if x < self.peak_end:
            return self.peak_rate
        decay = math.log(self.tail_floor) * (x - self.peak_end) / (1.0 - self.peak_end)
        return self.peak_rate * math.exp(decay)

    def expected(self, steps: int = 10_000) -> float:
        """The expected number of readers over the whole run (the rate's integral)."""
        dt = self.seconds / steps
        return sum(self.rate((i + 0.5) * dt) for i in range(steps)) * dt


def arrivals(day: ArticleDay, rng: random.Random, max_readers: int | None = None) -> list[float]:
    """Arrival times (seconds from the start, increasing) of a Poisson stream with the day's
    rate, by thinning a stream at the peak rate; at most `max_readers` of them."""
    times: list[float] = []
    if day.peak_rate <= 0:
        return times
    t = 0.0
    while max_readers is None or len(times) < max_readers:
        t += rng.expovariate(day.peak_rate)
        if t >= day.seconds:
            break
        if rng.random() * day.peak_rate < day.rate(t):
            times.append(t)
    return times


# -- what one reader does -----------------------------------------------------------------------


@dataclass(frozen=True)
class ReaderPlan:
    """How long a reader thinks after the welcome cells, how many more cells they run (each
    after thinking again), and when they leave."""

    think: float
    more_runs: int
    linger: float

    @classmethod
    def draw(cls, rng: random.Random, think_mean: float = 20.0, more_chance: float = 0.3,
             linger_mean: float = 30.0) -> ReaderPlan:
        more = 0
        while more < 3 and rng.random() < more_chance:
            more += 1
        return cls(think=rng.expovariate(1 / think_mean) if think_mean > 0 else 0.0, more_runs=more,
                   linger=rng.expovariate(1 / linger_mean) if linger_mean > 0 else 0.0)


@dataclass
class Outcome:
    """What happened to one reader; times in seconds from their arrival."""

    arrived: float = 0.0
    bounced: bool = False  # the No-vacancy page
    waited: bool = False  # went through the waiting line
    host: str = ""  # where their notebook was served (scheme://host:port)
    container: str = ""
    to_notebook: float | None = None  # the notebook page loaded
    to_kernel: float | None = None  # the kernel started (POST api/kernels answered)
    to_channels: float | None = None  # its websocket open
    to_output: float | None = None  # the first cell's output came back
    reconnects: int = 0  # kernel websocket attempts refused or dropped before one held
    last_reconnect_error: str | None = None
    cells: int = 0  # cells run with the expected output, the slider move included
    slider: bool = False
    left: float | None = None
    error: str | None = None

    @property
    def served(self) -> bool:
        """Got a working kernel: the first cell answered as it should."""
        return self.to_output is not None

    @property
    def lost(self) -> bool:
        """Neither served nor told there was no room: the failure a reader must never meet."""
        return not self.served and not self.bounced


class ReaderFailed(Exception):
    pass


def refresh_target(html: str) -> tuple[float, str] | None:
    """A waiting page's `<meta http-equiv="refresh" content="N; url=…">`: (N, url)."""
    match = META_REFRESH.search(html)
    if match is None:
        return None
    return float(match.group(1)), unescape((match.group(2) or "").strip())


def landing_of(url: str) -> tuple[str, str] | None:
    """(container id, token) of a notebook URL `…/user/<id>/…?token=…`, or None."""
    parts = urlsplit(url)
    match = USER_PATH.match(parts.path)
    tokens = parse_qs(parts.query).get("token")
    if match is None or not tokens:
        return None
    return match.group(1), tokens[0]


def execute_request(code: str, session: str) -> dict[str, Any]:
    return _message("execute_request", session, {
        "code": code, "silent": False, "store_history": True, "user_expressions": {},
        "allow_stdin": False, "stop_on_error": True,
    })


def slider_move(comm_id: str, value: int, session: str) -> dict[str, Any]:
    """The message a browser sends when the reader drags an ipywidgets slider (widget
    message protocol 2: an `update` of the model's state)."""
    return _message("comm_msg", session, {
        "comm_id": comm_id, "data": {"method": "update", "state": {"value": value}, "buffer_paths": []},
    })


def _message(msg_type: str, session: str, content: dict[str, Any]) -> dict[str, Any]:
    return {
        "header": {"msg_id": uuid.uuid4().hex, "username": "reader", "session": session,
                   "msg_type": msg_type, "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [], "content": content,
    }


@dataclass
class Reply:
    """What the kernel sent back for one request: printed text, the result, widgets opened."""

    stream: str = ""
    result: str | None = None
    error: str | None = None
    sliders: list[str] = field(default_factory=list)  # comm ids of IntSlider models opened
    done: Deferred = field(default_factory=Deferred)


class KernelChannels:
    """A kernel's channels websocket (twisted.web.websocket protocol): sends requests and
    gathers each one's iopub messages until the kernel is idle again."""

    def __init__(self) -> None:
        self.session = uuid.uuid4().hex
        self.transport: Any = None
        self.replies: dict[str, Reply] = {}
        self.closed: Deferred[None] = Deferred()

    # WebSocketProtocol
    def negotiationStarted(self, transport: Any) -> None:
        self.transport = transport

    def negotiationFinished(self) -> None:
        pass

    def pongReceived(self, payload: bytes) -> None:
        pass

    def bytesMessageReceived(self, data: bytes) -> None:
        pass

    def textMessageReceived(self, message: str) -> None:
        msg = json.loads(message)
        reply = self.replies.get(msg.get("parent_header", {}).get("msg_id", ""))
        if reply is not None:
            collect(reply, msg)

    def connectionLost(self, reason: Any) -> None:
        for reply in self.replies.values():
            if not reply.done.called:
                reply.done.errback(ReaderFailed("kernel channels closed"))
        if not self.closed.called:
            self.closed.callback(None)

    # what the reader uses
    def send(self, message: dict[str, Any]) -> Reply:
        reply = self.replies[message["header"]["msg_id"]] = Reply()
        self.transport.sendTextMessage(json.dumps(message))
        return reply

    def close(self) -> None:
        if self.transport is not None:
            self.transport.loseConnection()


def collect(reply: Reply, msg: dict[str, Any]) -> None:
    """One iopub/shell message for `reply`'s request."""
    kind, content = msg.get("msg_type"), msg.get("content", {})
    if kind == "stream":
        reply.stream += content.get("text", "")
    elif kind == "execute_result":
        reply.result = content.get("data", {}).get("text/plain")
    elif kind == "error":
        reply.error = f"{content.get('ename')}: {content.get('evalue')}"
    elif kind == "comm_open" and content.get("target_name") == "jupyter.widget":
        if content.get("data", {}).get("state", {}).get("_model_name") == "IntSliderModel":
            reply.sliders.append(content["comm_id"])
    elif kind == "status" and content.get("execution_state") == "idle" and not reply.done.called:
        reply.done.callback(reply)


@dataclass(frozen=True)
class ReaderWorld:
    """What readers need from where they run: the clock, treq, websockets, the front door."""

    clock: IReactorTime
    http: Any  # a treq HTTPClient with a cookie jar per reader (see `new_http`)
    new_http: Callable[[], Any]
    open_channels: Callable[[str], Deferred]  # ws URL → connected KernelChannels
    front_door: str  # e.g. http://127.0.0.1:8000/
    timeout: float = 60.0  # for each step


async def read_article(world: ReaderWorld, plan: ReaderPlan, outcome: Outcome,
                       on_ran_cells: Callable[[Outcome], None] = lambda o: None) -> Outcome:
    """One reader, start to end; fills `outcome` as it goes (never raises)."""
    clock, start = world.clock, world.clock.seconds()
    http = world.new_http()
    channels: KernelChannels | None = None
    try:
        url = await through_front_door(world, http, outcome)
        if url is None:
            return outcome
        page = await _get(world, http, url)
        if page[0] != 200:
            raise ReaderFailed(f"notebook page answered {page[0]}")
        outcome.to_notebook = clock.seconds() - start
        container, token = landing_of(url) or ("", "")
        prefix = USER_PATH.match(urlsplit(url).path).group(0)  # type: ignore[union-attr]
        base = f"{outcome.host}{prefix}"
        kernel = await _post_json(world, http, f"{base}api/kernels?token={token}", {"name": "python3"})
        outcome.to_kernel = clock.seconds() - start
        ws_url = base.replace("http", "ws", 1) + f"api/kernels/{kernel['id']}/channels?token={token}"
        channels = await open_channels(world, ws_url, outcome)
        outcome.to_channels = clock.seconds() - start
        hello = await _within(world, channels.send(execute_request(HELLO_CELL, channels.session)).done, "first cell")
        if hello.error or "Hello from Python" not in hello.stream or hello.result != "285":
            raise ReaderFailed(f"first cell: {hello.error or hello.stream!r} {hello.result!r}")
        outcome.to_output = clock.seconds() - start
        outcome.cells += 1
        shown = await _within(world, channels.send(execute_request(SLIDER_CELL, channels.session)).done, "slider cell")
        if shown.error or not shown.sliders:
            raise ReaderFailed(f"slider cell: {shown.error or 'no slider'}")
        outcome.cells += 1
        moved = await _within(world, channels.send(slider_move(shown.sliders[0], SLIDER_TO, channels.session)).done,
                              "slider move")
        if SLIDER_PRINTS not in moved.stream:
            raise ReaderFailed(f"slider move printed {moved.stream!r}")
        outcome.slider = True
        outcome.cells += 1
        on_ran_cells(outcome)
        for run in range(plan.more_runs):
            await deferLater(clock, plan.think, lambda: None)
            more = await _within(world, channels.send(execute_request(f"sum(range({run + 10}))", channels.session)).done,
                                 "another cell")
            if more.result != str(sum(range(run + 10))):
                raise ReaderFailed(f"another cell gave {more.result!r}")
            outcome.cells += 1
        await deferLater(clock, plan.linger, lambda: None)
    except Exception as e:  # a reader's failure is data, never the run's end
        outcome.error = f"{type(e).__name__}: {_described(e)}"
    finally:
        if channels is not None:
            channels.close()  # the tab closes: no more traffic from this reader
        outcome.left = clock.seconds() - start
    return outcome


async def open_channels(world: ReaderWorld, ws_url: str, outcome: Outcome) -> KernelChannels:
    """The kernel's channels, reconnecting as JupyterLab does when the server refuses or drops
    the websocket (it tries again after 1, 2, 4, … seconds): a reader sees a "connecting"
    badge, not an error, while a busy server comes round."""
    for delay in RECONNECT_DELAYS:
        try:
            return await _within(world, world.open_channels(ws_url), "kernel channels")
        except Exception as e:
            outcome.reconnects += 1
            outcome.last_reconnect_error = f"{type(e).__name__}: {_described(e)}"
            await deferLater(world.clock, delay, lambda: None)
    return await _within(world, world.open_channels(ws_url), "kernel channels")


async def through_front_door(world: ReaderWorld, http: Any, outcome: Outcome) -> str | None:
    """Follow redirects and waiting pages from the front door to a notebook URL; None when
    told there is no room (`outcome.bounced`)."""
    url = world.front_door
    for _ in range(MAX_HOPS):
        code, headers, body = await _get(world, http, url)
        location = headers.get("location")
        if code in (301, 302, 303, 307) and location:
            url = urljoin(url, location)
            if landing_of(url) is not None:
                parts = urlsplit(url)
                outcome.host = f"{parts.scheme}://{parts.netloc}"
                outcome.container = landing_of(url)[0]  # type: ignore[index]
                return url
            if "/wait/" in urlsplit(url).path:
                outcome.waited = True
            continue
        if code == 503:
            outcome.bounced = True
            return None
        if code in (200, 202) and (refresh := refresh_target(body.decode("utf-8", "replace"))) is not None:
            outcome.waited = True
            delay, target = refresh
            await deferLater(world.clock, min(delay, 5.0), lambda: None)
            url = urljoin(url, target) if target else url
            continue
        raise ReaderFailed(f"front door answered {code} at {url}")
    raise ReaderFailed("too many redirects")


async def _get(world: ReaderWorld, http: Any, url: str) -> tuple[int, dict[str, str], bytes]:
    response = await _within(world, http.get(url, allow_redirects=False, headers=BROWSER_HEADERS), "GET")
    body = await _within(world, response.content(), "body")
    headers = {k.decode().lower(): v[-1].decode() for k, v in response.headers.getAllRawHeaders()}
    return response.code, headers, body


async def _post_json(world: ReaderWorld, http: Any, url: str, data: dict[str, Any]) -> dict[str, Any]:
    response = await _within(world, http.post(url, json=data), "POST")
    body = await _within(world, response.content(), "body")
    if response.code not in (200, 201):
        raise ReaderFailed(f"POST {urlsplit(url).path} answered {response.code}")
    return json.loads(body)


async def _within(world: ReaderWorld, d: Deferred, what: str) -> Any:
    """`d`'s result, or ReaderFailed after the world's timeout."""
    d.addTimeout(world.timeout, world.clock, onTimeoutCancel=lambda r, t: _timed_out(what, t))
    return await d


def _described(e: Exception) -> str:
    """The error's text; for a refused websocket, the HTTP answer that refused it."""
    response = getattr(e, "response", None)
    if response is not None and hasattr(response, "code"):
        return f"HTTP {response.code} {getattr(response, 'phrase', b'')!r}"
    return str(e)


def _timed_out(what: str, timeout: float) -> None:
    raise ReaderFailed(f"{what}: no answer within {timeout:g} s")
