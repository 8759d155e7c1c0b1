"""Hostile notebooks and share ids, as properties (hypothesis).

Whatever bytes a visitor's file holds, a share either stores a valid, untrusted notebook or
answers 4xx and stores nothing. Share ids never collide and cannot be walked.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import nbformat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.results import succeeded
from sharefakes import BASE, World
from tmpnb.share.service import ShareSettings, is_share_id, new_share_id
from tmpnb.share.snapshot import MAX_DEPTH

MAX_BYTES = 20_000


def valid_notebook(source: str = "1 + 1", **metadata) -> dict:
    cell = nbformat.v4.new_code_cell(source, metadata=metadata)
    return json.loads(nbformat.writes(nbformat.v4.new_notebook(cells=[cell])))


def nested(depth: int) -> object:
    value: object = 1
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


malformed_json = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(lambda t: t.encode("utf-8")),
    st.integers(1, 400).map(lambda cut: json.dumps(valid_notebook()).encode()[:cut]),
)
huge_cells = st.integers(MAX_BYTES, 3 * MAX_BYTES).map(
    lambda size: json.dumps(valid_notebook("x" * size)).encode())
deep_nesting = st.one_of(
    st.integers(MAX_DEPTH + 1, 3000).map(lambda depth: json.dumps(valid_notebook(deep=nested(depth))).encode()
                                          if depth < 900 else b"[" * depth + b"]" * depth),
    st.integers(10_000, 50_000).map(lambda depth: b"{\"a\":" * depth + b"1" + b"}" * depth),
)
not_utf8 = st.tuples(st.integers(0, 100), st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80"])).map(
    lambda cut: (lambda raw: raw[: 20 + cut[0]] + cut[1] + raw[20 + cut[0]:])(json.dumps(valid_notebook()).encode()))
not_notebooks = st.one_of(
    st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=5),
    st.lists(st.integers(), max_size=5),
    st.just({"cells": "nope", "metadata": {}, "nbformat": 4, "nbformat_minor": 5}),
    st.just({"cells": [{"cell_type": "code", "source": 1}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}),
).map(lambda value: json.dumps(value).encode())
hostile = st.one_of(malformed_json, huge_cells, deep_nesting, not_utf8, not_notebooks)


def a_world() -> World:
    return World(Path(tempfile.mkdtemp(prefix="tnbhy")), ShareSettings(max_bytes=MAX_BYTES, shares_per_hour=10**6))


def share(world: World, token: str) -> int:
    body = json.dumps({"url": "/user/alice/notebooks/work.ipynb"}).encode()
    response = succeeded(world.http.post(BASE + "/api/share", data=body, headers={"Authorization": f"token {token}"}))
    succeeded(response.content())
    return response.code


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=hostile)
def test_hostile_notebooks_get_a_4xx_and_store_nothing(raw):
    world = a_world()
    token = world.visitor("alice", raw)
    try:
        nbformat.validate(nbformat.reads(raw.decode("utf-8"), as_version=4))
        fits = len(raw) <= MAX_BYTES
    except Exception:
        fits = False
    if fits:  # the rare generated value that is a fine notebook after all
        return
    assert 400 <= share(world, token) < 500
    assert world.store.count_since("alice", 0) == 0
    with world.store._cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM notebooks")
        assert cur.fetchone()[0] == 0


@settings(max_examples=40, deadline=None)
@given(flags=st.lists(st.sampled_from([True, False, "yes", 1, None]), min_size=1, max_size=5),
       top=st.sampled_from([True, False, None]))
def test_trusted_flags_never_reach_the_store(flags, top):
    world = a_world()
    cells = [nbformat.v4.new_code_cell("print(1)", metadata={} if f is None else {"trusted": f}) for f in flags]
    notebook = nbformat.v4.new_notebook(cells=cells)
    if top is not None:
        notebook.metadata["trusted"] = top
    token = world.visitor("alice", nbformat.writes(notebook).encode())
    assert share(world, token) == 201
    [stored] = world.store.from_container("alice", world.clock.seconds())
    content = json.loads(world.store.content(stored.content_hash))
    assert all("trusted" not in cell["metadata"] for cell in content["cells"])
    assert "trusted" not in content["metadata"]


def test_share_ids_never_collide_and_look_random():
    ids = [new_share_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    assert all(is_share_id(i) for i in ids)
    # Not a counter: consecutive ids have nothing in common beyond chance.
    numbers = [int.from_bytes(i.encode(), "big") for i in ids[:1000]]
    assert len({b - a for a, b in zip(numbers, numbers[1:])}) > 990
    same_first = sum(a[0] == b[0] for a, b in zip(ids, ids[1:]))
    assert same_first < len(ids) / 16  # 64 symbols: about 1/64 by chance


def test_equal_notebooks_get_unrelated_ids():
    world = a_world()
    token = world.visitor("alice", json.dumps(valid_notebook()).encode())
    assert share(world, token) == share(world, token) == 201
    first, second = world.store.from_container("alice", world.clock.seconds())
    assert first.id != second.id and first.content_hash == second.content_hash
    assert first.content_hash[:22] not in (first.id, second.id)


@settings(max_examples=100, deadline=None)
@given(guess=st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_./%", max_size=30))
def test_guessed_ids_find_nothing(guess):
    world = _guessing
    response = succeeded(world.http.get(BASE + "/share/" + guess))
    succeeded(response.content())
    assert response.code in (404, 405) or (response.code == 200 and guess == "")


_guessing = a_world()
assert share(_guessing, _guessing.visitor("alice", json.dumps(valid_notebook()).encode())) == 201
