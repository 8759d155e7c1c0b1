"""Turning the bytes of a visitor's notebook into what a share stores, or refusing them.

Pure functions over bytes: the orchestrator fetched the file over the container's socket
(tmpnb/share/contents.py); nothing here trusts it. A shared notebook must never run its
scripts in anyone's server, so every `trusted` flag goes before storing and again before a
remix is written (nbformat trusts cells that say so, and jupyter_server then signs them).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

DEFAULT_MAX_BYTES = 10_000_000
# Real notebooks nest a few levels (outputs, mime bundles, widget state); JSON nested deeper
# than this is an attack on the parsers, and Python's json recursion would fail later anyway.
MAX_DEPTH = 64


class Rejected(ValueError):
    """Not a notebook tmpnb will share; `code` is the HTTP status to answer with."""

    def __init__(self, reason: str, code: int = 400) -> None:
        super().__init__(reason)
        self.code = code


@dataclass(frozen=True)
class Snapshot:
    content: bytes  # canonical nbformat JSON, UTF-8
    content_hash: str  # sha256 of content


def _depth(value: Any, limit: int) -> int:
    """How deep `value` nests, without recursion; raises Rejected past `limit`."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            raise Rejected("nested too deeply")
        deepest = max(deepest, depth)
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return deepest


def untrusted(notebook: dict) -> dict:
    """The notebook with every cell's `trusted` flag removed (and the notebook-level one)."""
    for cell in notebook.get("cells", []):
        metadata = cell.get("metadata")
        if isinstance(metadata, dict):
            metadata.pop("trusted", None)
    metadata = notebook.get("metadata")
    if isinstance(metadata, dict):
        metadata.pop("trusted", None)
    return notebook


def without_outputs(notebook: dict) -> dict:
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
    return notebook


def parse(raw: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> dict:
    """The notebook in `raw` as nbformat v4 data, untrusted; raises Rejected otherwise."""
    if len(raw) > max_bytes:
        raise Rejected(f"larger than {max_bytes} bytes", 413)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Rejected("not UTF-8") from None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # json's C parser stops deep nesting with RecursionError
        raise Rejected("not JSON") from None
    if not isinstance(data, dict):
        raise Rejected("not a notebook")
    _depth(data, MAX_DEPTH)
    import nbformat  # ≈22 MiB and seconds (jsonschema's format checkers): only once someone shares

    try:
        notebook = nbformat.reads(text, as_version=4)
        nbformat.validate(notebook)
    except Exception as e:  # nbformat raises many kinds for many kinds of junk
        raise Rejected(f"not a valid notebook: {type(e).__name__}") from None
    return untrusted(notebook)


def snapshot(raw: bytes, max_bytes: int = DEFAULT_MAX_BYTES, outputs: bool = True) -> Snapshot:
    """What a share stores for the file `raw`: validated, untrusted, outputs kept unless asked."""
    notebook = parse(raw, max_bytes)
    if not outputs:
        notebook = without_outputs(notebook)
    import nbformat  # parse() imported it already

    content = nbformat.writes(notebook).encode("utf-8")
    if len(content) > max_bytes:
        raise Rejected(f"larger than {max_bytes} bytes", 413)
    return Snapshot(content, hashlib.sha256(content).hexdigest())


def for_remix(content: bytes, share_id: str) -> dict:
    """The stored notebook as the JSON model a remixer's server gets: untrusted, with its origin."""
    notebook = untrusted(json.loads(content))
    notebook.setdefault("metadata", {}).setdefault("tmpnb", {})["remixed_from"] = share_id
    return notebook
