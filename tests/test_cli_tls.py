"""`tmpnb run` leaves pyOpenSSL out of a node that uses no TLS (its memory: benchmarks/RESULTS.md)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tmpnb.cli import _tls_values

CHECK = """
import sys
from tmpnb.cli import leave_tls_out_unless_asked
left_out = leave_tls_out_unless_asked(sys.argv[1:])
from twisted.internet import endpoints, reactor  # noqa: F401  (both import pyOpenSSL if they may)
print(left_out, "OpenSSL" in sys.modules and sys.modules["OpenSSL"] is not None)
"""


def loads_openssl(*args: str) -> tuple[str, str]:
    done = subprocess.run([sys.executable, "-c", CHECK, *args],
                          capture_output=True, text=True, check=True)
    left_out, loaded = done.stdout.split()
    return left_out, loaded


def test_a_node_without_tls_runs_without_pyopenssl() -> None:
    assert loads_openssl("--pool-size", "3", "--listen", "tcp:8000", "--frame-ancestors", "https://a.example") \
        == ("True", "False")


@pytest.mark.parametrize("args", [
    ("--listen", "ssl:443:privateKey=k.pem"),
    ("--listen=ssl:443:privateKey=k.pem",),
    ("--proxy-api-url", "https://chp.example:8001"),
    ("--admin-port=ssl:8002:privateKey=k.pem",),
])
def test_an_option_that_names_tls_keeps_it(args: tuple[str, ...]) -> None:
    assert loads_openssl(*args) == ("False", "True")


def test_only_the_values_of_tls_options_count() -> None:
    args = ["--public-url", "https://nb.example", "--listen", "tcp:80", "--web-listen=unix:/x", "--proxy-api-url"]
    assert _tls_values(args) == ["tcp:80", "unix:/x", ""]
