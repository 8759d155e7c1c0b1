"""Build tmpnb's notebook image without any container registry.

Two steps, each skipped when its result already exists:
1. a minimal Debian base from debootstrap, imported with `docker import`;
2. the notebook image from the Dockerfile next to this file, built on that base.
Each image carries a label with the sha256 of its recipe, so "already built" means "built from
exactly these files", whatever the tag says.

These functions block (docker-py, subprocesses): the service calls `ensure_image` in a thread.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from docker import DockerClient
from docker.errors import ImageNotFound

from tmpnb.config import DEFAULT_IMAGE

RECIPE_DIR = Path(__file__).resolve().parent
# The files the notebook image is made of (paths relative to RECIPE_DIR), besides the base.
# requirements.in is not among them: the lock is what gets installed.
RECIPE_FILES = ("Dockerfile", "requirements.txt", "Welcome.ipynb")
RECIPE_DIRS = ("files",)
RECIPE_LABEL = "org.tmpnb.recipe"

BASE_IMAGE = "tmpnb/debian-base:bookworm"
BASE_LABEL = "org.tmpnb.base-recipe"
DEBOOTSTRAP_ARGS = ("--variant=minbase", "--include=python3,python3-venv,tini", "bookworm")
# Emptied after debootstrap: containers never run apt, so its caches and lists are dead weight.
BASE_PRUNE = ("var/cache/apt/archives", "var/lib/apt/lists")
BASE_CHANGES = ("ENV LANG=C.UTF-8", 'CMD ["/bin/bash"]')
DEFAULT_MIRROR = "http://deb.debian.org/debian"

# Package downloads go through a TLS-intercepting gateway here: the build trusts the host's CAs.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

Say = Callable[[str], None]


class BuildError(Exception):
    """A step of the image build failed; the message says which and why."""


def _quiet(message: str) -> None:
    pass


def base_recipe_hash() -> str:
    """The sha256 of what goes into the Debian base (not where it is downloaded from)."""
    recipe = json.dumps([DEBOOTSTRAP_ARGS, BASE_PRUNE, BASE_CHANGES])
    return hashlib.sha256(recipe.encode()).hexdigest()


def recipe_files(root: Path = RECIPE_DIR) -> list[str]:
    """The notebook image's recipe files under `root`, as sorted relative paths."""
    names = list(RECIPE_FILES)
    for directory in RECIPE_DIRS:
        names += [
            path.relative_to(root).as_posix()
            for path in (root / directory).rglob("*")
            if path.is_file() and "__pycache__" not in path.parts
        ]
    return sorted(names)


def recipe_hash(root: Path = RECIPE_DIR) -> str:
    """The sha256 of the notebook image's recipe: its files (names and contents) and the base's."""
    digest = hashlib.sha256()
    digest.update(base_recipe_hash().encode())
    for name in recipe_files(root):
        content = (root / name).read_bytes()
        # Length-prefixed, so moving bytes from one file to the next changes the hash.
        digest.update(f"\0{name}\0{len(content)}\0".encode())
        digest.update(content)
    return digest.hexdigest()


def debian_mirror(apt_dir: Path = Path("/etc/apt")) -> str:
    """The Debian mirror this host's apt uses (one-line or deb822 sources), else deb.debian.org."""
    sources = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*"))]
    for source in sources:
        try:
            text = source.read_text()
        except OSError:
            continue
        candidates = re.findall(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)", text, re.MULTILINE)
        candidates += [
            uri for line in re.findall(r"^URIs:(.*)$", text, re.MULTILINE) for uri in line.split()
        ]
        for uri in candidates:
            if uri.rstrip("/").endswith("/debian"):
                return uri.rstrip("/")
    return DEFAULT_MIRROR


def find_labelled_image(client: DockerClient, name: str, label: str, digest: str) -> str | None:
    """The id of the image tagged `name` whose `label` says it was built from `digest`, if any."""
    for image in client.images.list(filters={"label": f"{label}={digest}"}):
        if name in image.tags:
            return image.id
    return None


def find_recipe_image(client: DockerClient, name: str, digest: str) -> str | None:
    """The id of the image tagged `name` that was built from the recipe `digest`, if any."""
    return find_labelled_image(client, name, RECIPE_LABEL, digest)


def ensure_image(
    client: DockerClient,
    name: str = DEFAULT_IMAGE,
    force: bool = False,
    *,
    say: Say = _quiet,
    mirror: str | None = None,
) -> str:
    """Make sure `name` is the notebook image of the current recipe; return its image id.

    Returns at once when it exists. Otherwise builds it (and the Debian base if that is
    missing): about 1.5 minutes cold, seconds when only the last layers changed.
    `force` rebuilds the notebook image even when present (the base is reused).
    """
    digest = recipe_hash()
    if not force:
        image_id = find_recipe_image(client, name, digest)
        if image_id is not None:
            say(f"{name} is up to date (recipe {digest[:12]}): {image_id}")
            return image_id
    base = ensure_base(client, say=say, mirror=mirror)
    return build_notebook_image(client, name, base, digest, say=say)


def ensure_base(
    client: DockerClient, name: str = BASE_IMAGE, *, say: Say = _quiet, mirror: str | None = None
) -> str:
    """Make sure the Debian base `name` exists, built from the current base recipe."""
    digest = base_recipe_hash()
    try:
        if client.images.get(name).labels.get(BASE_LABEL) == digest:
            return name
    except ImageNotFound:
        pass
    build_base(client, name, digest, say=say, mirror=mirror or debian_mirror())
    return name


def build_base(client: DockerClient, name: str, digest: str, *, say: Say, mirror: str) -> None:
    """debootstrap a minimal Debian, prune it, and `docker import` it as `name`."""
    if shutil.which("debootstrap") is None:
        raise BuildError("debootstrap is not installed (apt-get install debootstrap)")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tmpnb-base-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        say(f"debootstrap {' '.join(DEBOOTSTRAP_ARGS)} from {mirror}")
        _run(["debootstrap", *DEBOOTSTRAP_ARGS, str(rootfs), mirror], "debootstrap")
        for pruned in BASE_PRUNE:
            _empty_directory(rootfs / pruned)
        tarball = Path(tmp) / "rootfs.tar"
        _run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(tarball), "."], "tar")
        repository, _, tag = name.rpartition(":")
        say(f"docker import as {name}")
        client.api.import_image(
            src=str(tarball),
            repository=repository,
            tag=tag,
            changes=[*BASE_CHANGES, f"LABEL {BASE_LABEL}={digest}"],
        )
    say(f"base {name} built in {time.monotonic() - started:.0f} s")


def build_notebook_image(
    client: DockerClient, name: str, base: str, digest: str, *, say: Say = _quiet
) -> str:
    """`docker build` the recipe on `base`, tagged `name` and labelled with `digest`."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tmpnb-image-") as context:
        for relative in recipe_files():
            target = Path(context) / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(RECIPE_DIR / relative, target)
        ca_bundle = Path(context) / "build-ca.crt"
        if HOST_CA_BUNDLE.exists():
            shutil.copyfile(HOST_CA_BUNDLE, ca_bundle)
        else:
            ca_bundle.write_bytes(b"")  # no bundle: the image's default trust store applies
        say(f"docker build {name} on {base} (recipe {digest[:12]})")
        _follow_build(
            client.api.build(
                path=context,
                tag=name,
                labels={RECIPE_LABEL: digest},
                buildargs={"BASE_IMAGE": base},
                network_mode="host",  # the default bridge is off on tmpnb hosts
                pull=False,
                rm=True,
                forcerm=True,
                decode=True,
            ),
            say,
        )
    image_id = client.images.get(name).id
    say(f"{name} built in {time.monotonic() - started:.0f} s: {image_id}")
    return image_id


def _follow_build(chunks: Iterable[dict], say: Say) -> None:
    for chunk in chunks:
        if "error" in chunk:
            raise BuildError(f"docker build failed: {chunk['error'].strip()}")
        text = chunk.get("stream", "").rstrip()
        if text:
            say(text)


def _run(argv: list[str], what: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-20:])
        raise BuildError(f"{what} failed with exit code {result.returncode}:\n{tail}")


def _empty_directory(directory: Path) -> None:
    if not directory.is_dir():
        return
    for entry in directory.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
