"""configurable-http-proxy 5.3's command line, for ``tmpnb-proxy`` and ``twistd tmpnb-proxy``.

Every option of ``configurable-http-proxy --help`` is known here: most do what they do in
CHP; the few tmpnb-proxy cannot honour are refused with a message naming them (`REFUSED`),
never silently ignored. JupyterHub runs the command with ``--ip --port --api-ip --api-port
--error-target --log-level``, plus ``--host-routing``, ``--ssl-*`` and, with internal SSL,
``--api-ssl-*`` and ``--client-ssl-*``.
"""

from __future__ import annotations

import ipaddress
import os

from twisted.python import usage

TOKEN_VARIABLE = "CONFIGPROXY_AUTH_TOKEN"
SSL_PASSPHRASE_VARIABLE = "CONFIGPROXY_SSL_KEY_PASSPHRASE"
API_SSL_PASSPHRASE_VARIABLE = "CONFIGPROXY_API_SSL_KEY_PASSPHRASE"

LOG_LEVELS = ("debug", "info", "warn", "error")

# CHP options tmpnb-proxy does not implement, and why; giving one is a usage error.
REFUSED = {
    "ssl-allow-rc4": "RC4 is not offered by this OpenSSL; tmpnb-proxy never enables it",
    "storage-backend": "routes live in tmpnb-proxy's memory; CHP's storage backends are Node modules it cannot load",
    "metrics-ip": "CHP's Prometheus metrics server is not part of tmpnb-proxy",
    "metrics-port": "CHP's Prometheus metrics server is not part of tmpnb-proxy",
    "metrics-socket": "CHP's Prometheus metrics server is not part of tmpnb-proxy",
}

# Accepted, and as in CHP without effect: Node ignores them on the proxy's client side too.
NO_EFFECT = {
    "client-ssl-request-cert": "a listener's option; targets' certificates are always checked unless --insecure",
    "client-ssl-reject-unauthorized": "a listener's option; targets' certificates are always checked unless --insecure",
}


def is_loopback(host: str) -> bool:
    """Whether an --api-ip only loopback can reach ('' is every interface; names other than
    localhost may resolve anywhere)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _millis(value: str) -> float:
    """A CHP duration (milliseconds, as parseInt reads them) in seconds; 0 means none."""
    try:
        millis = int(value.strip())
    except ValueError:
        raise ValueError(f"not a number of milliseconds: {value!r}") from None
    if millis < 0:
        raise ValueError(f"a negative duration: {value!r}")
    return millis / 1000


def _log_level(value: str) -> str:
    level = value.lower()
    if level not in LOG_LEVELS:
        raise ValueError(f"{value!r} is not one of {', '.join(LOG_LEVELS)}")
    return level


class Options(usage.Options):
    synopsis = "Usage: tmpnb-proxy [options]  (configurable-http-proxy's; the API token comes from $CONFIGPROXY_AUTH_TOKEN)"

    optFlags = [
        ["ssl-request-cert", None, "Request SSL certs to authenticate clients."],
        ["ssl-reject-unauthorized", None, "Reject unauthorized SSL connections (with --ssl-request-cert)."],
        ["ssl-allow-rc4", None, "Refused: RC4 is never enabled."],
        ["api-ssl-request-cert", None, "Request SSL certs to authenticate clients for API requests."],
        ["api-ssl-reject-unauthorized", None, "Reject unauthorized SSL connections (with --api-ssl-request-cert)."],
        ["client-ssl-request-cert", None, "Accepted without effect, as in CHP."],
        ["client-ssl-reject-unauthorized", None, "Accepted without effect, as in CHP."],
        ["no-x-forward", None, "Don't add X-Forwarded-* headers to proxied requests."],
        ["no-prepend-path", None, "Don't prepend a target's path to proxied requests."],
        ["no-include-prefix", None, "Don't include the routing prefix in proxied requests."],
        ["auto-rewrite", None, "Rewrite the Location header host/port in redirect responses."],
        ["change-origin", None, "Set the Host header of proxied requests to the target's."],
        ["insecure", None, "Disable SSL certificate verification of https targets."],
        ["host-routing", None, "Use host routing (the host is the first level of the path)."],
    ]

    optParameters = [
        ["ip", None, "127.0.0.1", "Public-facing IP of the proxy ('' or '*': every interface)."],
        ["port", None, 8000, "Public-facing port of the proxy.", int],
        ["socket", None, None, "UNIX socket for the proxy to listen on, instead of --ip/--port."],
        ["ssl-key", None, None, "SSL key to use, if any."],
        ["ssl-cert", None, None, "SSL certificate to use, if any."],
        ["ssl-ca", None, None, "SSL certificate authority, if any."],
        ["ssl-protocol", None, None, "Only this TLS version (TLSv1_2, TLSv1_3, ...; TLS: any)."],
        ["ssl-ciphers", None, None, "':'-separated OpenSSL cipher list (default excludes RC4)."],
        ["ssl-dhparam", None, None, "Diffie-Hellman parameters PEM file, if any."],
        ["api-ip", None, "127.0.0.1", "Inward-facing IP for API requests."],
        ["api-port", None, None, "Inward-facing port for API requests (default: --port + 1).", int],
        ["api-socket", None, None, "UNIX socket for the API to listen on, instead of --api-ip/--api-port."],
        ["unix-socket-root", None, "/run/tmpnb",
         "tmpnb-proxy only: http+unix:// targets given through the API must lie under this directory "
         "(tmpnb's --socket-root); any other socket of the host is refused with 400."],
        ["api-ssl-key", None, None, "SSL key for the API, if any."],
        ["api-ssl-cert", None, None, "SSL certificate for the API, if any."],
        ["api-ssl-ca", None, None, "SSL certificate authority for the API's clients, if any."],
        ["client-ssl-key", None, None, "SSL key the proxy presents to https targets."],
        ["client-ssl-cert", None, None, "SSL certificate the proxy presents to https targets."],
        ["client-ssl-ca", None, None, "SSL certificate authority that signs https targets."],
        ["default-target", None, None, "Default proxy target (proto://host[:port]): the route '/'."],
        ["error-target", None, None, "Server for error pages: <error-target>/<status>?url=<path>."],
        ["error-path", None, None, "Directory of error pages: <status>.html, else error.html."],
        ["redirect-port", None, None, "Redirect HTTP requests on this port to the proxy's HTTPS.", int],
        ["redirect-to", None, None, "The HTTPS port --redirect-port sends visitors to.", int],
        ["pid-file", None, None, "Write our PID to a file."],
        ["protocol-rewrite", None, None, "Rewrite the Location header protocol in redirect responses."],
        ["metrics-ip", None, None, "Refused: no metrics server."],
        ["metrics-port", None, None, "Refused: no metrics server."],
        ["metrics-socket", None, None, "Refused: no metrics server."],
        ["log-level", None, "info", "Log level (debug, info, warn, error).", _log_level],
        ["timeout", None, None, "Milliseconds after which a silent visitor connection is dropped (default: never).", _millis],
        ["proxy-timeout", None, None, "Milliseconds a target may stay silent (default: no limit); then 503.", _millis],
        ["storage-backend", None, None, "Refused: routes are kept in memory."],
        ["keep-alive-timeout", None, 5.0, "Milliseconds an idle keep-alive connection stays open (default 5000).", _millis],
        ["static-dir", None, None, "tmpnb's own: a directory served centrally for every notebook's static files."],
        # tmpnb's own: the front door (docs/security.md). Durations in milliseconds, as CHP's.
        ["head-timeout", None, 20.0, "tmpnb's own: milliseconds a whole request head may take (default 20000; 0: none).", _millis],
        ["body-timeout", None, 20.0,
         "tmpnb's own: milliseconds a request body gets before --body-min-rate applies (default 20000; 0: none).", _millis],
        ["body-min-rate", None, 500.0, "tmpnb's own: bytes per second a request body must keep up (default 500).", float],
        ["max-client-connections", None, 0,
         "tmpnb's own: connections open at once from one client address, oldest idle shed first (default 0: no cap).", int],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["custom-header"] = []
        self["version"] = False
        self._given: set[str] = set()

    def opt_version(self) -> None:
        """Output the version number."""
        self["version"] = True  # usage.Options' own prints Twisted's and exits

    opt_V = opt_version

    def opt_custom_header(self, value: str) -> None:
        """Custom header to add to proxied requests, as name:value; repeat for more."""
        name, colon, content = value.strip().partition(":")
        if not colon or not name.strip():
            raise usage.UsageError(f"--custom-header: a colon was expected in custom header: {value}")
        self["custom-header"].append((name.strip(), content.strip()))

    def postOptions(self) -> None:
        for name, why in REFUSED.items():
            if self[name]:
                raise usage.UsageError(f"--{name} is not supported by tmpnb-proxy: {why}")
        if self["ip"] == "*":
            self["ip"] = ""  # CHP reads '*' as every interface
        if self["api-ip"] == "localhost":
            self["api-ip"] = "127.0.0.1"  # CHP's default name for it
        if self["socket"] and (self.given("ip") or self.given("port")):
            raise usage.UsageError("--socket cannot be given with --ip or --port")
        if self["api-socket"] and (self.given("api-ip") or self.given("api-port")):
            raise usage.UsageError("--api-socket cannot be given with --api-ip or --api-port")
        if self["api-port"] is None:
            self["api-port"] = self["port"] + 1
        if self["error-target"] and self["error-path"]:
            raise usage.UsageError("Cannot specify both --error-target and --error-path. Pick one.")
        if self["redirect-port"] and not (self["ssl-key"] or self["ssl-cert"]):
            raise usage.UsageError("--redirect-port: HTTPS redirection specified but certificates not provided.")
        for side in ("ssl", "api-ssl", "client-ssl"):
            if bool(self[f"{side}-key"]) != bool(self[f"{side}-cert"]):
                raise usage.UsageError(f"--{side}-key and --{side}-cert go together")
        if self["body-min-rate"] < 0 or self["max-client-connections"] < 0:
            raise usage.UsageError("--body-min-rate and --max-client-connections cannot be negative")
        for number in ("timeout", "proxy-timeout", "head-timeout", "body-timeout"):
            if self[number] == 0:
                self[number] = None  # as parseInt → 0 in CHP: no timeout
        if not self["keep-alive-timeout"]:
            self["keep-alive-timeout"] = 5.0  # CHP: `keepAliveTimeout || 5000`
        # CHP's only channel for the secret: never a command-line argument, which `ps` shows.
        self["auth-token"] = os.environ.get(TOKEN_VARIABLE) or None
        if not self["auth-token"] and not self["api-socket"] and not is_loopback(self["api-ip"]):
            # Whoever reaches an open route API can send any visitor anywhere.
            where = self["api-ip"] or "every interface"
            raise usage.UsageError(
                f"the REST API on {where} would accept anyone: set ${TOKEN_VARIABLE}, "
                f"or keep --api-ip on loopback (127.0.0.1, ::1) or use --api-socket")
        self["ssl-passphrase"] = os.environ.get(SSL_PASSPHRASE_VARIABLE) or None
        self["api-ssl-passphrase"] = os.environ.get(API_SSL_PASSPHRASE_VARIABLE) or None

    def parseOptions(self, options=None) -> None:
        import sys

        given = sys.argv[1:] if options is None else list(options)
        self._given = {arg.split("=", 1)[0] for arg in given if arg.startswith("--")}
        super().parseOptions(options)

    def given(self, name: str) -> bool:
        """Whether ``--name`` was on the command line (not only its default)."""
        return f"--{name}" in self._given
