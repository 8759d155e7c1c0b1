"""tmpnb-proxy's command line is configurable-http-proxy 5.3's: every option known.

An option is either implemented or refused with a message naming it; none is silently
ignored. The list is read from CHP's own ``--help`` where CHP is installed.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest
from twisted.python import usage

import tmpnb

from tmpnb.proxy.api import parse_inactive_since
from tmpnb.proxy.options import NO_EFFECT, REFUSED, Options

CHP = os.environ.get("TMPNB_CHP", "/opt/chp/node_modules/configurable-http-proxy/bin/configurable-http-proxy")

# What JupyterHub 5/6 runs, internal SSL and subdomains included (jupyterhub/proxy.py).
JUPYTERHUB_COMMAND_LINE = [
    "--ip", "", "--port", "8000", "--api-ip", "127.0.0.1", "--api-port", "8001",
    "--error-target", "https://127.0.0.1:8081/hub/error", "--log-level", "info", "--host-routing",
    "--api-ssl-key", "k", "--api-ssl-cert", "c", "--api-ssl-ca", "ca", "--api-ssl-request-cert",
    "--api-ssl-reject-unauthorized", "--client-ssl-key", "k", "--client-ssl-cert", "c",
    "--client-ssl-ca", "ca", "--client-ssl-request-cert", "--client-ssl-reject-unauthorized",
]


# Options that only make sense with a partner (CHP would fail later, when it reads the files).
NEEDS = {
    "ssl-key": ["--ssl-cert", "c"],
    "ssl-cert": ["--ssl-key", "k"],
    "api-ssl-key": ["--api-ssl-cert", "c"],
    "api-ssl-cert": ["--api-ssl-key", "k"],
    "client-ssl-key": ["--client-ssl-cert", "c"],
    "client-ssl-cert": ["--client-ssl-key", "k"],
    "redirect-port": ["--ssl-key", "k", "--ssl-cert", "c"],
}


VALUES = {"custom-header": "X-A: 1", "log-level": "debug"}  # "1" will do for the others


def parse(*argv: str) -> Options:
    options = Options()
    options.parseOptions(list(argv))
    return options


def chp_help_options() -> list[tuple[str, bool]]:
    """(name, takes a value) for every option CHP's --help lists."""
    text = subprocess.run([CHP, "--help"], capture_output=True, text=True, timeout=60, check=True).stdout
    found = re.findall(r"^\s+(?:-\w, )?--([\w-]+)( <[^>]+>)?", text, re.MULTILINE)
    return [(name, bool(value)) for name, value in found if name != "help"]


@pytest.mark.chp
def test_every_option_of_chps_help_is_known(monkeypatch):
    if not os.path.exists(CHP):
        pytest.skip("configurable-http-proxy 5.3 not installed")
    # A token: without one, an --api-ip off loopback is refused (tests/test_proxy_api_targets.py).
    monkeypatch.setenv("CONFIGPROXY_AUTH_TOKEN", "t")
    listed = chp_help_options()
    assert len(listed) == 49  # CHP 5.3's whole list, --help aside
    for name, takes_value in listed:
        argv = [f"--{name}", VALUES.get(name, "1")] if takes_value else [f"--{name}"]
        if name in ("socket", "api-socket", "metrics-socket"):
            argv = [f"--{name}", "/tmp/x.sock"]
        argv += NEEDS.get(name, [])
        try:
            options = parse(*argv)
        except usage.UsageError as error:
            assert name in REFUSED, f"--{name} refused but not listed as refused: {error}"
            assert f"--{name}" in str(error), f"the refusal of --{name} does not name it: {error}"
        else:
            assert name not in REFUSED
            assert name in options, name


def test_jupyterhubs_command_line_is_accepted():
    options = parse(*JUPYTERHUB_COMMAND_LINE)
    assert options["error-target"] == "https://127.0.0.1:8081/hub/error"
    assert options["host-routing"] and options["api-ssl-request-cert"] and options["api-ssl-reject-unauthorized"]
    assert options["ip"] == ""  # every interface, as CHP
    assert all(options[name] for name in NO_EFFECT)  # accepted; makeService logs that they do nothing


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_refused_option_is_a_usage_error_naming_it(name):
    argv = [f"--{name}"] if name == "ssl-allow-rc4" else [f"--{name}", "x"]
    with pytest.raises(usage.UsageError, match=f"--{name} is not supported by tmpnb-proxy"):
        parse(*argv)


def test_timeouts_are_milliseconds_and_none_by_default():
    assert (parse()["timeout"], parse()["proxy-timeout"]) == (None, None)
    options = parse("--timeout", "1500", "--proxy-timeout", "250", "--keep-alive-timeout", "7000")
    assert (options["timeout"], options["proxy-timeout"], options["keep-alive-timeout"]) == (1.5, 0.25, 7.0)
    assert parse()["keep-alive-timeout"] == 5.0  # CHP's default
    assert parse("--timeout", "0")["timeout"] is None
    with pytest.raises(usage.UsageError):
        parse("--timeout", "soon")


def test_custom_headers_repeat_and_need_a_colon():
    options = parse("--custom-header", "X-A: 1", "--custom-header", "X-B:two:parts")
    assert options["custom-header"] == [("X-A", "1"), ("X-B", "two:parts")]
    with pytest.raises(usage.UsageError, match="colon"):
        parse("--custom-header", "nocolon")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--error-target", "http://a", "--error-path", "/tmp"], "both"),
        (["--socket", "/tmp/p.sock", "--port", "9000"], "--socket"),
        (["--redirect-port", "8080"], "certificates"),
        (["--ssl-key", "k"], "--ssl-key and --ssl-cert"),
        (["--log-level", "loud"], "loud"),
    ],
)
def test_contradictions_are_refused_as_chp_refuses_them(argv, message):
    with pytest.raises(usage.UsageError, match=message):
        parse(*argv)


def test_the_token_comes_from_the_environment_only(monkeypatch):
    monkeypatch.setenv("CONFIGPROXY_AUTH_TOKEN", "from-env")
    assert parse()["auth-token"] == "from-env"


@pytest.mark.parametrize(
    "text",
    [
        "2026-12-01T00:00:00Z",
        "2026-12-01T00:00:00.000Z",
        "2026-12-01T01:00:00+01:00",
        "Tue, 01 Dec 2026 00:00:00 GMT",  # RFC 1123, Date.toUTCString
        "Tue, 01 Dec 2026 01:00:00 +0100",  # RFC 2822
        "Tuesday, 01-Dec-26 00:00:00 GMT",  # RFC 850
        "Tue Dec  1 00:00:00 2026",  # asctime
        "Tue Dec 01 2026 01:00:00 GMT+0100 (Central European Standard Time)",  # Date.toString
    ],
)
def test_inactive_since_reads_the_date_forms_chps_parser_reads(text):
    assert parse_inactive_since(text) == 1796083200.0  # 2026-12-01T00:00:00Z


def test_the_cli_refuses_an_unknown_option_with_a_message(capsys):
    from tmpnb.proxy.cli import main

    assert main(["--storage-backend", "redis"]) == 1
    assert "--storage-backend is not supported" in capsys.readouterr().err
    assert main(["-V"]) == 0
    assert capsys.readouterr().out.strip() == tmpnb.__version__


def test_twistd_wiring_takes_jupyterhubs_options_and_says_what_has_no_effect():
    # `twistd tmpnb-proxy` keeps working with the same Options: makeService on a memory reactor.
    from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock
    from twisted.logger import globalLogPublisher

    from tmpnb.proxy.tap import makeService

    options = parse("--port", "9100", "--log-level", "debug", "--error-target", "http://127.0.0.1:8081/hub/error",
                    "--host-routing", "--client-ssl-request-cert", "--timeout", "5000")
    events = EventLoggingObserver()
    globalLogPublisher.addObserver(events)
    try:
        reactor = MemoryReactorClock()
        service = makeService(options, reactor)
        service.startService()
    finally:
        globalLogPublisher.removeObserver(events)
    said = [event["log_format"] for event in events]
    assert any("twistd's logging decides" in text for text in said)
    assert any(event.get("option") == "client-ssl-request-cert" for event in events)
    public = {port: factory for port, factory, _, _ in reactor.tcpServers}[9100]
    assert (public.settings.host_routing, public.settings.timeout, public.answers.error_pages is not None) == (True, 5.0, True)
    service.stopService()
