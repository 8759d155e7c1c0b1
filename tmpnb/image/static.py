"""Copy the notebook server's static files out of the image, for the proxy to serve centrally.

Every container would serve the same ~35 MB of JavaScript, CSS and fonts; most of the requests
and bytes of loading a notebook page are these files (see docs/image.md). The image records
where its server finds them (`STATIC_LAYOUT_PATH`, written at build time by
files/static_layout.py); this copies them out of a created, never started container.

DEST/manifest.json maps each URL prefix under a container's base_url to a subdirectory of DEST,
e.g. {"static/notebook/": "static-notebook", "static/": "static", ...}: a request for
`/user/<id>/static/notebook/main.js` is DEST/static-notebook/main.js. The longest matching
prefix wins, as in the server.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
import uuid
from pathlib import Path

from docker import DockerClient
from docker.errors import NotFound

from tmpnb.config import DEFAULT_IMAGE

STATIC_LAYOUT_PATH = "/opt/notebook/share/tmpnb/static-layout.json"
MANIFEST_NAME = "manifest.json"
EXTRACT_LABEL = "org.tmpnb.extract-static"


class NoStaticLayout(Exception):
    """The image does not say where its static files are (it is not built by tmpnb.image)."""


def subdirectory_for(prefix: str) -> str:
    """The directory of DEST holding the files of a URL prefix: "static/lab/" -> "static-lab"."""
    return prefix.strip("/").replace("/", "-")


def extract_static(
    client: DockerClient, dest: str | os.PathLike, image: str = DEFAULT_IMAGE
) -> dict[str, str]:
    """Fill `dest` with the image's static files and manifest.json; return the manifest.

    Subdirectories are replaced whole, so a proxy reading DEST meanwhile sees the old or the
    new files, and manifest.json is written last.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    container = client.containers.create(
        image,
        name=f"tmpnb-extract-static-{uuid.uuid4().hex[:12]}",
        network_mode="none",
        labels={EXTRACT_LABEL: "1"},
    )
    try:
        image_layout = _read_layout(container, image)
        manifest: dict[str, str] = {}
        with tempfile.TemporaryDirectory(prefix=".staging-", dir=dest) as staging:
            for prefix, directories in image_layout.items():
                subdirectory = subdirectory_for(prefix)
                # The server takes the first directory that has the file: copy the last first.
                for directory in reversed(directories):
                    _copy_out(container, directory, Path(staging) / subdirectory)
                _replace_directory(Path(staging) / subdirectory, dest / subdirectory)
                manifest[prefix] = subdirectory
    finally:
        container.remove(force=True)
    _write_json(dest / MANIFEST_NAME, manifest)
    return manifest


def load_static_layout(dest: str | os.PathLike) -> list[tuple[str, Path]]:
    """(URL prefix under base_url, directory) pairs from DEST/manifest.json, longest first."""
    dest = Path(dest)
    manifest = json.loads((dest / MANIFEST_NAME).read_text())
    pairs = [(prefix, dest / subdirectory) for prefix, subdirectory in manifest.items()]
    return sorted(pairs, key=lambda pair: len(pair[0]), reverse=True)


def _read_layout(container, image: str) -> dict[str, list[str]]:
    try:
        raw = _read_file(container, STATIC_LAYOUT_PATH)
    except (NotFound, FileNotFoundError) as error:
        raise NoStaticLayout(f"{image} has no {STATIC_LAYOUT_PATH}: {error}") from error
    return json.loads(raw)


def _read_file(container, path: str) -> bytes:
    with _archive(container, path) as archive:
        member = archive.next()
        if member is None or not member.isfile():
            raise FileNotFoundError(path)
        return archive.extractfile(member).read()


def _copy_out(container, directory: str, target: Path) -> None:
    """Merge the image's `directory` into `target` (files already there are overwritten)."""
    target.mkdir(parents=True, exist_ok=True)
    with _archive(container, directory) as archive:
        members = []
        for member in archive.getmembers():
            # The archive holds the directory itself as its top entry: drop that component.
            _, _, inside = member.name.partition("/")
            if inside:
                member.name = inside
                members.append(member)
        # The "data" filter refuses absolute paths, links out of target and device files.
        archive.extractall(target, members=members, filter="data")


class _archive:
    """The tar stream of `docker cp`, spooled to a temporary file so tarfile can seek."""

    def __init__(self, container, path: str) -> None:
        self.container = container
        self.path = path

    def __enter__(self) -> tarfile.TarFile:
        chunks, _stat = self.container.get_archive(self.path)
        self.spool = tempfile.TemporaryFile()
        for chunk in chunks:
            self.spool.write(chunk)
        self.spool.seek(0)
        self.tar = tarfile.open(fileobj=self.spool)
        return self.tar

    def __exit__(self, *exc_info) -> None:
        self.tar.close()
        self.spool.close()


def _replace_directory(new: Path, old: Path) -> None:
    retired = old.with_name(f".retired-{old.name}-{uuid.uuid4().hex[:8]}")
    if old.exists():
        old.rename(retired)
    new.rename(old)
    shutil.rmtree(retired, ignore_errors=True)


def _write_json(path: Path, data: dict) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    temporary.replace(path)
