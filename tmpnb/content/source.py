"""A repository onto disk: a folder as it is, a git URL (or a bare repository's path) cloned.

A clone is `git clone --depth 1` into a temporary directory removed afterwards, run without a
shell, its URL checked first: https, http, ssh, file, and scp-like `git@host:path` only (not
git's `ext::` transport, which runs a command, nor anything that could be read as an option).
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tmpnb.content.errors import ContentError
from tmpnb.image.build import Say

URL_SCHEMES = ("https", "http", "ssh", "file")
_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://\S+")
_SCP_LIKE = re.compile(r"git@[A-Za-z0-9.-]+:[A-Za-z0-9._~/-][^\s]*")
CLONE_TIMEOUT = 600.0


def is_url(source: str) -> bool:
    """Whether `source` is meant as a URL (then it must be an allowed one) rather than a path."""
    return "://" in source or bool(re.match(r"[^/\s]+@[^/\s]+:", source))


def check_url(source: str) -> None:
    """Raise ContentError unless `source` is a git URL tmpnb clones."""
    match = _URL.fullmatch(source)
    if match is not None and match.group("scheme").lower() in URL_SCHEMES:
        return
    if _SCP_LIKE.fullmatch(source):
        return
    raise ContentError(
        f"{source!r} is not a URL tmpnb clones: https://, http://, ssh://, file:// or git@host:path"
    )


def is_bare_repository(path: Path) -> bool:
    """A bare git repository (HEAD, objects/, refs/ and no work tree): cloned, not read as files."""
    return (path / "HEAD").is_file() and (path / "objects").is_dir() and (path / "refs").is_dir()


@contextmanager
def checked_out(source: str, *, say: Say) -> Iterator[Path]:
    """The repository `source` on disk, for the length of the block."""
    if is_url(source):
        check_url(source)
        with _clone(source, say) as root:
            yield root
        return
    path = Path(source).expanduser().resolve()
    if not path.is_dir():
        raise ContentError(f"{source!r} is neither a folder nor a git URL")
    if is_bare_repository(path):
        with _clone(path.as_uri(), say) as root:
            yield root
        return
    yield path


@contextmanager
def _clone(url: str, say: Say) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="tmpnb-content-") as tmp:
        root = Path(tmp) / "repository"
        say(f"git clone --depth 1 {url}")
        argv = ["git", "-c", "protocol.ext.allow=never", "clone", "--depth", "1", "--quiet", "--", url, str(root)]
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
        try:
            result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=CLONE_TIMEOUT, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise ContentError(f"git clone {url} took more than {CLONE_TIMEOUT:.0f} s") from None
        except FileNotFoundError:
            raise ContentError("git is not installed (apt-get install git)") from None
        if result.returncode != 0:
            tail = "\n".join(result.stderr.strip().splitlines()[-10:])
            raise ContentError(f"git clone {url} failed:\n{tail}")
        yield root
