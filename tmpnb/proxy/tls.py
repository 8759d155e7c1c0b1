"""TLS as configurable-http-proxy's options describe it, built with pyOpenSSL.

`ServerTLS`: the public listener (``--ssl-*``) or the API listener (``--api-ssl-*``), with
Node's meaning of ``request-cert`` (ask for a client certificate) and ``reject-unauthorized``
(refuse a connection whose certificate is missing or not signed by the CA).
`TargetTLS`: how the proxy reaches ``https://`` targets (``--client-ssl-*``, ``--insecure``),
which is JupyterHub's internal SSL: every server has a certificate from the hub's own CA.
"""

from __future__ import annotations

import re
from types import ModuleType
from typing import TYPE_CHECKING, Any, Mapping

from twisted.internet.interfaces import IOpenSSLClientConnectionCreator

if TYPE_CHECKING:
    from OpenSSL import SSL
    from twisted.internet import ssl

# configurable-http-proxy's default: strong suites first, RC4 and other weak ones excluded.
DEFAULT_CIPHERS = "ECDHE+AESGCM:DHE+AESGCM:ECDHE+AES:DHE+AES:HIGH:!aNULL:!eNULL:!EXPORT:!DES:!RC4:!MD5:!PSK:!SRP:!CAMELLIA"

# Node's secureProtocol names (without "_method") this OpenSSL can still honour: SSL's constants.
_PINNED_VERSIONS = {
    "TLSv1": "TLS1_VERSION",
    "TLSv1_1": "TLS1_1_VERSION",
    "TLSv1_2": "TLS1_2_VERSION",
    "TLSv1_3": "TLS1_3_VERSION",
}
_ANY_VERSION = {"TLS", "SSLv23"}

_PEM_CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


class TLSConfigError(ValueError):
    """A TLS option that cannot be honoured; the message names it."""


def _openssl() -> tuple[ModuleType, ModuleType]:
    """pyOpenSSL's SSL and Twisted's ssl, imported on first use: a process that never speaks
    TLS need not load them (`tmpnb run` leaves them out, tmpnb/cli.py)."""
    try:
        from OpenSSL import SSL
        from twisted.internet import ssl
    except ImportError as error:
        raise TLSConfigError(f"TLS needs pyOpenSSL, which this process left out or lacks: {error}") from None
    return SSL, ssl


def check_protocol(name: str | None) -> None:
    if name is not None and name not in _PINNED_VERSIONS and name not in _ANY_VERSION:
        known = ", ".join(sorted(_ANY_VERSION | set(_PINNED_VERSIONS)))
        raise TLSConfigError(f"--ssl-protocol {name}: not available in this OpenSSL (known: {known})")


def read_certificates(path: str) -> list[ssl.Certificate]:
    """Every certificate of a PEM bundle (a CA file may hold a chain or several roots)."""
    _, ssl = _openssl()
    with open(path, "rb") as f:
        found = _PEM_CERTIFICATE.findall(f.read())
    if not found:
        raise TLSConfigError(f"{path}: no PEM certificate in it")
    return [ssl.Certificate.loadPEM(pem) for pem in found]


class ServerTLS:
    """An OpenSSL context factory for a listener, built (and checked) once at start-up."""

    def __init__(
        self,
        key: str,
        cert: str,
        ca: str | None = None,
        request_cert: bool = False,
        reject_unauthorized: bool = False,
        protocol: str | None = None,
        ciphers: str | None = None,
        dhparam: str | None = None,
        passphrase: str | None = None,
    ) -> None:
        check_protocol(protocol)
        SSL, _ = _openssl()
        context = SSL.Context(SSL.TLS_SERVER_METHOD)
        context.set_options(SSL.OP_NO_SSLv2 | SSL.OP_NO_SSLv3 | SSL.OP_CIPHER_SERVER_PREFERENCE)
        if protocol in _PINNED_VERSIONS:
            context.set_min_proto_version(getattr(SSL, _PINNED_VERSIONS[protocol]))
            context.set_max_proto_version(getattr(SSL, _PINNED_VERSIONS[protocol]))
        if passphrase:
            context.set_passwd_cb(lambda *_: passphrase.encode("utf-8"))
        try:
            context.use_certificate_chain_file(cert)
            context.use_privatekey_file(key)
            context.check_privatekey()
            context.set_cipher_list((ciphers or DEFAULT_CIPHERS).encode("ascii"))
            if dhparam:
                context.load_tmp_dh(dhparam)
            if ca:
                context.load_verify_locations(ca)
        except SSL.Error as error:
            raise TLSConfigError(f"TLS setup with key {key} and certificate {cert} failed: {error}") from None
        if request_cert:
            if reject_unauthorized:
                # OpenSSL's own verdict, and no certificate at all is a failure too.
                context.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, lambda _c, _x, _e, _d, ok: bool(ok))
            else:
                # Node: ask for a certificate but let the application see any, or none.
                context.set_verify(SSL.VERIFY_PEER, lambda *_: True)
        context.set_session_id(b"tmpnb-proxy")
        self._context = context

    def getContext(self) -> SSL.Context:
        return self._context


def listener_tls(options: Mapping[str, Any], prefix: str) -> ServerTLS | None:
    """The listener's TLS from its options (prefix ``ssl-`` or ``api-ssl-``), or None without a key.

    Protocol, ciphers and dhparam have no ``api-`` form in configurable-http-proxy: both
    listeners share the ``ssl-`` ones.
    """
    if not options[prefix + "key"]:
        return None
    return ServerTLS(
        options[prefix + "key"],
        options[prefix + "cert"],
        ca=options[prefix + "ca"],
        request_cert=options[prefix + "request-cert"],
        reject_unauthorized=options[prefix + "reject-unauthorized"],
        passphrase=options[prefix + "passphrase"],
        protocol=options["ssl-protocol"],
        ciphers=options["ssl-ciphers"],
        dhparam=options["ssl-dhparam"],
    )


class TargetTLS:
    """The client side towards https targets: a client certificate, a CA, or no checks at all."""

    def __init__(self, key: str | None = None, cert: str | None = None, ca: str | None = None, insecure: bool = False) -> None:
        self._insecure = insecure
        self._client_certificate = None
        if cert or key:
            if not (cert and key):
                raise TLSConfigError("--client-ssl-key and --client-ssl-cert go together")
            _, ssl = _openssl()
            with open(cert, "rb") as c, open(key, "rb") as k:
                self._client_certificate = ssl.PrivateCertificate.loadPEM(c.read() + b"\n" + k.read())
        self._trust = _openssl()[1].trustRootFromCertificates(read_certificates(ca)) if ca else None
        self._unverified = None
        self._creators: dict[str, IOpenSSLClientConnectionCreator] = {}  # building a context is costly

    def creator_for(self, hostname: str) -> IOpenSSLClientConnectionCreator:
        _, ssl = _openssl()
        if self._insecure:
            if self._unverified is None:
                extra = {}
                if self._client_certificate is not None:
                    extra = {
                        "privateKey": self._client_certificate.privateKey.original,
                        "certificate": self._client_certificate.original,
                    }
                self._unverified = ssl.CertificateOptions(verify=False, **extra)
            return self._unverified
        creator = self._creators.get(hostname)
        if creator is None:
            if len(self._creators) > 1000:
                self._creators.clear()
            creator = self._creators[hostname] = ssl.optionsForClientTLS(
                hostname,
                trustRoot=self._trust if self._trust is not None else ssl.platformTrust(),
                clientCertificate=self._client_certificate,
            )
        return creator
