"""The ``tmpnb-proxy`` command next to configurable-http-proxy 5.3, on the same requests.

A backend that thinks for a few seconds before answering, behind each proxy started with the
same command line: without a timeout both wait for it; with ``--timeout`` both drop the
visitor's connection; with ``--proxy-timeout`` both answer 503. Each proxy is a subprocess on
free loopback ports, stopped by its PID.
"""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests

from hub_process import stop_pid, tmpnb_proxy_command
from tmpnb_process import CHP, REPO, free_port

pytestmark = pytest.mark.integration

THINKING = 3.0  # seconds the backend stays silent: a few beyond the 1 s timeouts below


class _Slow(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path.startswith("/headers"):  # answers at once with what it was sent
            body = json.dumps({name.lower(): value for name, value in self.headers.items()}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        time.sleep(THINKING)
        body = b"done thinking"
        try:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the proxy gave up on us: what the timeout tests want

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def slow_backend():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()



def start_proxy(kind: str, tmp_path, target: str, *options: str) -> tuple[subprocess.Popen, str]:
    if kind == "chp":
        if not os.path.exists(CHP):
            pytest.skip("configurable-http-proxy 5.3 not installed")
        command = [CHP]
    else:
        command = tmpnb_proxy_command(tmp_path / "bin")
    port, api_port = free_port(), free_port()
    env = dict(os.environ, PATH=f"{tmp_path / 'bin'}:{os.path.dirname(sys.executable)}:{os.environ['PATH']}", PYTHONPATH=str(REPO))
    env["CONFIGPROXY_AUTH_TOKEN"] = "t"
    process = subprocess.Popen(
        [*command, "--ip", "127.0.0.1", "--port", str(port), "--api-ip", "127.0.0.1", "--api-port", str(api_port),
         "--default-target", target, *options],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            socket.create_connection(("127.0.0.1", api_port), timeout=1).close()
            return process, f"http://127.0.0.1:{port}"
        except OSError:
            assert process.poll() is None, f"{kind} exited with {process.returncode}"
            time.sleep(0.1)
    stop_pid(process.pid)
    raise AssertionError(f"{kind} did not listen within 30s")


@pytest.fixture(params=["tmpnb-proxy", pytest.param("chp", marks=pytest.mark.chp)])
def proxy(request, tmp_path, slow_backend):
    started = []

    def start(*options: str) -> str:
        process, base = start_proxy(request.param, tmp_path, slow_backend, *options)
        started.append(process)
        return base

    yield start
    for process in started:
        stop_pid(process.pid)
        process.wait(10)


def test_without_a_timeout_a_thinking_backend_is_waited_for(proxy):
    base = proxy()
    reply = requests.get(f"{base}/think", timeout=60)
    assert (reply.status_code, reply.text) == (200, "done thinking")


def test_with_timeout_a_silent_exchange_drops_the_visitors_connection(proxy):
    base = proxy("--timeout", "1000")
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{base}/think", timeout=60)


def test_forwarded_headers_are_the_same_as_chps(tmp_path, slow_backend):
    if not os.path.exists(CHP):
        pytest.skip("configurable-http-proxy 5.3 not installed")
    seen = {}
    for kind in ("tmpnb-proxy", "chp"):
        process, base = start_proxy(kind, tmp_path, slow_backend)
        try:
            port = base.rsplit(":", 1)[1]
            sent = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https", "X-Forwarded-Port": "443"}
            reply = requests.get(f"{base}/headers", headers=sent, timeout=30)
            # each proxy has its own port: compare the rest
            seen[kind] = {
                name: value.replace(port, "PORT") for name, value in reply.json().items() if name.startswith("x-forwarded-")
            }
        finally:
            stop_pid(process.pid)
            process.wait(10)
    assert seen["tmpnb-proxy"] == seen["chp"]
    assert seen["chp"]["x-forwarded-for"] == "203.0.113.9,127.0.0.1"
    assert seen["chp"]["x-forwarded-port"] == "443,PORT"
    assert seen["chp"]["x-forwarded-host"] == "127.0.0.1:PORT"


# --- TLS on the public side


def _certificates(directory) -> dict[str, str]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    files = {}

    def issue(name, key, issuer_name, issuer_key, ca=False, san=None):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(issuer_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    def write(name, cert, key):
        files[name + "-cert"] = str(directory / f"{name}.crt")
        files[name + "-key"] = str(directory / f"{name}.key")
        (directory / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (directory / f"{name}.key").write_bytes(
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    write("ca", issue("test CA", ca_key, ca_name, ca_key, ca=True), ca_key)
    for name, san in [("server", [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), ("client", None)]:
        key = ec.generate_private_key(ec.SECP256R1())
        write(name, issue(name, key, ca_name, ca_key, san=san), key)
    return files


@pytest.fixture(params=["tmpnb-proxy", pytest.param("chp", marks=pytest.mark.chp)])
def kind(request):
    return request.param


def test_ssl_options_serve_https_and_can_demand_a_client_certificate(kind, tmp_path, slow_backend):
    certs = _certificates(tmp_path)
    process, base = start_proxy(
        kind, tmp_path, slow_backend,
        "--ssl-key", certs["server-key"], "--ssl-cert", certs["server-cert"], "--ssl-ca", certs["ca-cert"],
        "--ssl-request-cert", "--ssl-reject-unauthorized",
    )
    https = base.replace("http://", "https://")
    try:
        client = (certs["client-cert"], certs["client-key"])
        reply = requests.get(f"{https}/headers", verify=certs["ca-cert"], cert=client, timeout=30)
        assert reply.status_code == 200
        assert reply.json()["x-forwarded-proto"] == "https"
        with pytest.raises(requests.exceptions.SSLError):  # no client certificate: refused
            requests.get(f"{https}/headers", verify=certs["ca-cert"], timeout=30)
    finally:
        stop_pid(process.pid)
        process.wait(10)


def test_with_proxy_timeout_a_silent_backend_gives_503(proxy):
    base = proxy("--proxy-timeout", "1000")
    reply = requests.get(f"{base}/think", timeout=60)
    assert reply.status_code == 503
