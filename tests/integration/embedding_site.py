"""Another site, on loopback, for the embedding tests: a journal's article page (and a thebe
page) served from 127.0.0.2 while tmpnb answers on 127.0.0.1. For the browser these are
two different sites, exactly as journal.example and tmpnb.example would be.

Also: a self-signed certificate for both addresses, and headless Chromium set up so that it
trusts that one certificate (by its public key) and can reach nothing but loopback.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import os
import ssl
import threading
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tmpnb_process import free_port

CHROMIUM = os.environ.get("TMPNB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                 # Anything not on loopback (a CDN a library might reach for) goes to a proxy
                 # that is not there: Chromium always connects to 127.0.0.0/8 directly.
                 "--proxy-server=http://127.0.0.1:9"]
# thebe's browser bundle (tools/setup --test installs it; it is never fetched from a CDN).
THEBE_LIB = Path(os.environ.get("TMPNB_THEBE", "/opt/thebe/node_modules/thebe/lib"))


@dataclass(frozen=True)
class Certificate:
    cert_path: str
    key_path: str
    spki_sha256: str  # base64, as Chromium's --ignore-certificate-errors-spki-list wants it

    def chromium_args(self) -> list[str]:
        """Chromium trusts this certificate, and only this one (it needs its own
        --user-data-dir for that, which playwright always gives it)."""
        return [f"--ignore-certificate-errors-spki-list={self.spki_sha256}"]


def make_certificate(directory: str, addresses: tuple[str, ...] = ("127.0.0.1", "127.0.0.2")) -> Certificate:
    """A fresh self-signed certificate (and its key) for `addresses`, written to `directory`."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tmpnb test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    Path(cert_path).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    Path(key_path).write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()))
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return Certificate(cert_path, key_path, base64.b64encode(hashlib.sha256(spki).digest()).decode())


class _Handler(SimpleHTTPRequestHandler):
    """Pages given by the test at their paths; everything under /thebe/ from thebe's bundle."""

    pages: dict[str, str] = {}

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path in self.pages:
            body = self.pages[path].encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif path.startswith("/thebe/"):
            self.path = self.path.removeprefix("/thebe")
            super().do_GET()
        else:
            self.send_error(404)

    def log_message(self, format: str, *args: object) -> None:
        pass


class Site:
    """A static site on `host` (a loopback address), over TLS when given a certificate."""

    def __init__(self, host: str, pages: dict[str, str], certificate: Certificate | None = None) -> None:
        handler = type("Handler", (_Handler,), {"pages": pages})
        self._server = ThreadingHTTPServer((host, free_port()), partial(handler, directory=str(THEBE_LIB)))
        scheme = "http"
        if certificate is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(certificate.cert_path, certificate.key_path)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            scheme = "https"
        self.origin = f"{scheme}://{host}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"site {self.origin}", daemon=True)

    def __enter__(self) -> Site:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


def article(notebook_url: str) -> str:
    """A journal's article with a live notebook in an iframe, as journals embed tmpnb."""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>An article</title></head>
<body>
<h1>An article with a live notebook</h1>
<p>Run the code below.</p>
<iframe id="notebook" src="{notebook_url}" width="1200" height="760"></iframe>
</body></html>
"""


def thebe_page(tmpnb_origin: str) -> str:
    """A static page with one executable cell: it asks tmpnb for a server (POST /api/spawn,
    a JSON body, from another site) and connects thebe to it with the token it was given."""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Live code</title>
<link rel="stylesheet" href="/thebe/thebe.css">
<script src="/thebe/index.js"></script>
</head>
<body>
<pre data-executable="true" data-language="python">print(6 * 7)</pre>
<script>
window.connected = (async () => {{
  const reply = await fetch("{tmpnb_origin}/api/spawn", {{
    method: "POST", headers: {{"Content-Type": "application/json"}}, body: JSON.stringify({{}})}});
  if (!reply.ok) throw new Error("spawn: " + reply.status);
  // A path on tmpnb's origin, or (--subdomain-host) an absolute URL on the visitor's own host.
  const url = new URL((await reply.json()).url, "{tmpnb_origin}");
  const token = url.searchParams.get("token");
  const path = url.pathname;  // /user/<id>/
  await thebe.bootstrap({{
    useBinder: false, useJupyterLite: false, requestKernel: true,
    mountActivateWidget: false, mountStatusWidget: false,
    serverSettings: {{baseUrl: url.origin + path, wsUrl: url.origin.replace(/^http/, "ws") + path, token}},
  }});
  window.serverOrigin = url.origin;
  return path;
}})();
</script>
</body></html>
"""
