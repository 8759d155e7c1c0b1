"""--nodes-file: one node URL a line, `#` comments; read at start and again on SIGHUP.

A file that cannot be read or holds a line that is not a node URL, or no node at all, is
refused as a whole: the redirector keeps the last good list (a half-written file must not
empty the federation).
"""

from __future__ import annotations

from pathlib import Path

from twisted.logger import Logger

from tmpnb.redirector.nodes import NodeTable, normalized_url

log = Logger()

SOURCE = "file"


class BadNodesFile(ValueError):
    pass


def parse_nodes(text: str) -> list[str]:
    """The node URLs in a nodes file's text, in order, without duplicates."""
    urls: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            url = normalized_url(line)
        except ValueError as e:
            raise BadNodesFile(f"line {number}: {e}") from None
        if url not in urls:
            urls.append(url)
    if not urls:
        raise BadNodesFile("no node in the file")
    return urls


def load_nodes_file(path: str, table: NodeTable) -> bool:
    """Make the file's nodes the table's file nodes; False (and a warning) if the file is bad."""
    try:
        urls = parse_nodes(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, BadNodesFile) as e:
        log.warn("nodes file {path} refused, keeping the last good list: {error}", path=path, error=str(e))
        return False
    table.replace_source(SOURCE, urls)
    log.info("nodes file {path}: {count} nodes", path=path, count=len(urls))
    return True
