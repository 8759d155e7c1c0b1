"""The public proxy behind an `ssl:` listener (`--listen ssl:443:privateKey=…:certKey=…`).

A browser's TLS handshake offers ALPN ("h2", "http/1.1"); Twisted's TLS layer then asks the
wrapped factory which protocols it speaks and fails the handshake when it names none. The
handshakes here run in memory (no reactor, no socket) with a certificate made for the test.
"""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from twisted.internet import ssl
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.test.iosim import connectedServerAndClient

from tmpnb.proxy.options import Options
from tmpnb.proxy.routes import RouteTable
from tmpnb.proxy.factory import ReverseProxyFactory
from tmpnb.proxy.tls import listener_tls


def self_signed_pem(common_name: str = "tmpnb test") -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(hours=1)).sign(key, hashes.SHA256()))
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()) + cert.public_bytes(serialization.Encoding.PEM)


class Received(Protocol):
    def __init__(self) -> None:
        self.data = b""

    def dataReceived(self, data: bytes) -> None:
        self.data += data


def handshake(client_alpn: list[bytes] | None):
    """A client offering `client_alpn` talks to the proxy over TLS, in memory: the client's
    TLS protocol, and a function that sends bytes and returns everything received so far."""
    reactor = MemoryReactorClock()
    proxy = ReverseProxyFactory(reactor, RouteTable(reactor))
    # The TLS layer gathers small writes until the next reactor turn: reactor.advance(0).
    server_tls = TLSMemoryBIOFactory(ssl.PrivateCertificate.loadPEM(self_signed_pem()).options(), False, proxy,
                                     clock=reactor)
    client_app = Received()
    client_tls = TLSMemoryBIOFactory(ssl.CertificateOptions(acceptableProtocols=client_alpn), True,
                                     Factory.forProtocol(lambda: client_app), clock=reactor)
    client, _, pump = connectedServerAndClient(lambda: server_tls.buildProtocol(None),
                                               lambda: client_tls.buildProtocol(None))

    def exchange(data: bytes) -> bytes:
        client_app.transport.write(data)
        for _ in range(3):
            reactor.advance(0)
            pump.flush()
        return client_app.data

    pump.flush()
    return client, exchange


def test_a_browser_offering_alpn_completes_the_handshake_and_speaks_http_1_1():
    client, exchange = handshake([b"h2", b"http/1.1"])

    assert client.negotiatedProtocol == b"http/1.1"
    # No route, no default target: the proxy itself answers.
    assert exchange(b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 404")


def test_a_client_without_alpn_is_served_too():
    client, exchange = handshake(None)

    assert client.negotiatedProtocol is None
    assert exchange(b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 404")


def served_name(tls) -> str:
    """The common name of the certificate a listener's TLS presents."""
    subject = SSL.Connection(tls.getContext(), None).get_certificate().to_cryptography().subject
    return subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def test_the_public_and_the_api_listener_each_take_their_own_tls_options(tmp_path):
    for name in ("public", "api"):
        (tmp_path / f"{name}.pem").write_bytes(self_signed_pem(name))
    options = Options()
    options.parseOptions([
        "--ssl-key", str(tmp_path / "public.pem"), "--ssl-cert", str(tmp_path / "public.pem"),
        "--api-ssl-key", str(tmp_path / "api.pem"), "--api-ssl-cert", str(tmp_path / "api.pem"),
        "--api-ssl-ca", str(tmp_path / "api.pem"), "--api-ssl-request-cert", "--api-ssl-reject-unauthorized",
    ])

    public, api = listener_tls(options, "ssl-"), listener_tls(options, "api-ssl-")

    assert served_name(public) == "public" and served_name(api) == "api"
    # Only the API side asked for client certificates, and refuses a client without one.
    assert public.getContext().get_verify_mode() == SSL.VERIFY_NONE
    assert api.getContext().get_verify_mode() == SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT


def test_a_listener_without_a_key_is_plain():
    options = Options()
    options.parseOptions([])

    assert listener_tls(options, "ssl-") is None and listener_tls(options, "api-ssl-") is None
