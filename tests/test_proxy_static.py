"""Central static files: served by the proxy for every container, never outside their directory."""

from __future__ import annotations

import json
import os

import pytest

from tmpnb.proxy.static import SMALL_FILE, StaticFiles
from tmpnb.proxy.testing import ProxyHarness


@pytest.fixture
def static_dir(tmp_path):
    root = tmp_path / "extracted"
    (root / "static" / "notebook").mkdir(parents=True)
    (root / "static" / "notebook" / "main.js").write_text("console.log('hi')")
    (root / "static" / "notebook" / "chunk.0123456789abcdef.js").write_text("chunk")
    (root / "static" / "big.bin").write_bytes(b"z" * (SMALL_FILE * 3 + 17))
    (root / "lab").mkdir()
    (root / "lab" / "style.css").write_text("body{}")
    (tmp_path / "secret.txt").write_text("the host's secret")
    os.symlink(tmp_path / "secret.txt", root / "static" / "escape.txt")
    (root / "manifest.json").write_text(json.dumps({"static/": "static", "lab/static/": "lab"}))
    return str(root)


def proxy(static_dir: str) -> ProxyHarness:
    harness = ProxyHarness(static_dir=static_dir)
    harness.routes.add("/user/a", {"target": harness.unix_target("a")})
    return harness


def get(harness: ProxyHarness, path: bytes, extra: bytes = b"", method: bytes = b"GET"):
    visitor = harness.visit()
    visitor.send(method + b" " + path + b" HTTP/1.1\r\nHost: h\r\n" + extra + b"\r\n")
    return visitor


def split(answer: bytes) -> tuple[bytes, dict[bytes, bytes], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = dict(line.split(b": ", 1) for line in lines[1:])
    return lines[0], {k.lower(): v for k, v in headers.items()}, body


def test_a_static_file_of_any_container_is_served_by_the_proxy(static_dir):
    harness = proxy(static_dir)
    for user in (b"a", b"someone-else"):
        visitor = get(harness, b"/user/" + user + b"/static/notebook/main.js")
        status, headers, body = split(visitor.received())
        assert status == b"HTTP/1.1 200 OK"
        assert body == b"console.log('hi')"
        assert headers[b"content-type"].startswith(b"text/javascript")
        assert visitor.open
    assert harness.attempts() == []  # no container was asked


def test_versioned_urls_are_cached_for_a_year_and_others_for_an_hour(static_dir):
    harness = proxy(static_dir)
    _, versioned, _ = split(get(harness, b"/user/a/static/notebook/main.js?v=7f3e").received())
    _, hashed, _ = split(get(harness, b"/user/a/static/notebook/chunk.0123456789abcdef.js").received())
    _, plain, _ = split(get(harness, b"/user/a/static/notebook/main.js").received())
    assert versioned[b"cache-control"] == b"public, max-age=31536000, immutable"
    assert hashed[b"cache-control"] == b"public, max-age=31536000, immutable"
    assert plain[b"cache-control"] == b"public, max-age=3600"


def test_every_prefix_of_the_manifest_is_served(static_dir):
    status, _, body = split(get(proxy(static_dir), b"/user/a/lab/static/style.css").received())
    assert (status, body) == (b"HTTP/1.1 200 OK", b"body{}")


def test_a_file_not_found_falls_through_to_the_container(static_dir):
    harness = proxy(static_dir)
    get(harness, b"/user/a/static/notebook/not-extracted.js")
    assert harness.accept().received().startswith(b"GET /user/a/static/notebook/not-extracted.js ")


def test_files_replaced_by_a_new_extraction_are_seen_at_once(static_dir):
    harness = proxy(static_dir)
    assert get(harness, b"/user/a/lab/static/style.css").received().endswith(b"body{}")
    os.remove(os.path.join(static_dir, "lab", "style.css"))
    get(harness, b"/user/a/lab/static/style.css")
    assert len(harness.attempts()) == 1  # gone from the directory: the container answers


def test_if_none_match_gets_304_and_head_gets_no_body(static_dir):
    harness = proxy(static_dir)
    _, headers, _ = split(get(harness, b"/user/a/static/notebook/main.js").received())
    status, _, body = split(get(harness, b"/user/a/static/notebook/main.js", b"If-None-Match: " + headers[b"etag"] + b"\r\n").received())
    assert (status, body) == (b"HTTP/1.1 304 Not Modified", b"")
    status, head_headers, body = split(get(harness, b"/user/a/static/notebook/main.js", method=b"HEAD").received())
    assert (status, body) == (b"HTTP/1.1 200 OK", b"")
    assert head_headers[b"content-length"] == b"17"


def test_a_large_file_streams_as_the_visitor_reads(static_dir):
    harness = proxy(static_dir)
    visitor = get(harness, b"/user/a/static/big.bin")
    _, headers, first = split(visitor.received())
    size = int(headers[b"content-length"])
    assert size > len(first)  # not written in one go
    received = len(first)
    while visitor.transport.producer is not None:
        visitor.transport.producer.resumeProducing()  # the visitor reads on
        received += len(visitor.received())
    assert received == size
    visitor.send(b"GET /user/a/static/notebook/main.js HTTP/1.1\r\nHost: h\r\n\r\n")
    assert visitor.received().endswith(b"console.log('hi')")  # keep-alive continues


@pytest.mark.parametrize(
    "path",
    [
        b"/user/a/static/escape.txt",  # a symlink out of the directory
        b"/user/a/static/..%2f..%2fsecret.txt",
        b"/user/a/static/%2e%2e/%2e%2e/secret.txt",
        b"/user/a/static/notebook/..%5c..%5csecret.txt",
        b"/user/a/static/%00main.js",
    ],
)
def test_no_path_leads_outside_the_extracted_directory(static_dir, path):
    answer = get(proxy(static_dir), path).received()
    assert b"secret" not in answer.partition(b"\r\n\r\n")[2]


def test_lookup_refuses_traversal_even_when_called_directly(static_dir):
    files = StaticFiles(static_dir)
    assert files.lookup("/user/a/static/notebook/main.js") is not None
    assert files.lookup("/user/a/static/../../secret.txt") is None
    assert files.lookup("/user/a/static/%2e%2e/%2e%2e/secret.txt") is None
    assert files.lookup("/user/a/static/escape.txt") is None
    assert files.lookup("/user/a/static/notebook") is None  # a directory
    assert files.lookup("/user/a/static/%ff%fe") is None
    assert files.lookup("/static/notebook/main.js") is None  # not below a server


def test_prefixes_can_be_given_instead_of_a_manifest(tmp_path):
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "x.css").write_text("x")
    assert StaticFiles(str(tmp_path), {"static/": "static"}).lookup("/user/b/static/x.css").size == 1


def test_without_a_manifest_nothing_is_served_centrally(tmp_path):
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "x.css").write_text("x")
    assert StaticFiles(str(tmp_path)).lookup("/user/b/static/x.css") is None


def test_without_static_files_everything_goes_to_the_container():
    harness = ProxyHarness()
    harness.routes.add("/user/a", {"target": harness.unix_target("a")})
    harness.visit().send(b"GET /user/a/static/notebook/main.js HTTP/1.1\r\nHost: h\r\n\r\n")
    assert len(harness.attempts()) == 1
