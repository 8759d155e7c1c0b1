"""What a content image is built from, as one hash, and the image's name.

The hash covers the repository's files (names, contents, the executable bit, symlink targets;
`.git` excluded, so a folder and a clone of it hash alike), the base image's id (a rebuilt
tmpnb/notebook gives new content images) and every file the builder generates (its Dockerfile,
scripts and the server's constraints: a change to the builder's recipe gives new images).
The image is `tmpnb/content-<slug>:<first 12 hex digits>`; `--name` replaces the repository part.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path

from tmpnb.content.errors import ContentError

HASH_VERSION = b"tmpnb-content-1"
TAG_LENGTH = 12
# Docker's reference grammar for a repository: path components of lowercase alphanumerics
# separated by ., _, __ or - (no registry host: tmpnb uses none).
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPOSITORY = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")


def repository_files(root: Path) -> list[str]:
    """Every file and symlink under `root` except `.git`, as sorted relative POSIX paths.

    Raises ContentError for what Docker cannot copy into an image (fifos, sockets, devices)."""
    found, odd = [], []
    for directory, dirnames, filenames in os.walk(root):
        links = [d for d in dirnames if os.path.islink(os.path.join(directory, d))]
        dirnames[:] = [d for d in dirnames if d != ".git" and d not in links]  # walked: not links
        relative_dir = Path(directory).relative_to(root)
        for name in [*filenames, *links]:
            if name == ".git":
                continue  # a submodule's or worktree's .git file
            path = Path(directory, name)
            mode = path.lstat().st_mode
            relative = (relative_dir / name).as_posix()
            if stat.S_ISREG(mode) or stat.S_ISLNK(mode):
                found.append(relative)
            else:
                odd.append(relative)
    if odd:
        raise ContentError(f"the repository holds files that are not regular files: {', '.join(sorted(odd)[:10])}")
    return sorted(set(found))


def repository_bytes(root: Path, files: list[str]) -> int:
    """The repository's size: the bytes of its regular files."""
    return sum((root / name).lstat().st_size for name in files if not (root / name).is_symlink())


def content_hash(root: Path, base_image_id: str, generated: Mapping[str, bytes]) -> str:
    """The sha256 of what the image is built from (module docstring)."""
    digest = hashlib.sha256(HASH_VERSION)
    _field(digest, b"base", base_image_id.encode())
    for name in sorted(generated):
        _field(digest, b"generated:" + name.encode(), generated[name])
    for name in repository_files(root):
        path = root / name
        if path.is_symlink():
            _field(digest, b"symlink:" + name.encode(), os.readlink(path).encode())
        else:
            kind = b"exec:" if path.stat().st_mode & 0o111 else b"file:"
            _field(digest, kind + name.encode(), path.read_bytes())
    return digest.hexdigest()


def _field(digest, name: bytes, content: bytes) -> None:
    # Length-prefixed, so moving bytes from one field to the next changes the hash.
    digest.update(b"\0%d\0%s\0%d\0" % (len(name), name, len(content)))
    digest.update(content)


def slug(text: str) -> str:
    """A repository name component from a folder name or URL ("My Course.git" → "my-course")."""
    last = re.split(r"[/:]", text.rstrip("/"))[-1]
    last = last.removesuffix(".git")
    cleaned = re.sub(r"[^a-z0-9]+", "-", last.lower()).strip("-")
    return cleaned[:64].strip("-") or "repository"


def image_name(source: str, digest: str, name: str | None = None) -> str:
    """`tmpnb/content-<slug>:<hash12>`, or `<name>:<hash12>` when the teacher named it."""
    if name is not None:
        check_repository_name(name)
        repository = name
    else:
        repository = f"tmpnb/content-{slug(source)}"
    return f"{repository}:{digest[:TAG_LENGTH]}"


def check_repository_name(name: str) -> None:
    """Raise ContentError unless `name` is a Docker repository name without a tag."""
    if len(name) > 200 or not REPOSITORY.fullmatch(name):
        raise ContentError(
            f"--name {name!r} is not an image repository name (lowercase letters, digits, and . _ - /; "
            "no tag: the tag is the content hash)"
        )
