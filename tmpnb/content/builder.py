"""`ensure_content_image`: a Binder-style repository to a tmpnb notebook image, through docker-py.

Blocks for as long as git and the build take (seconds to minutes): call it before the service
starts (`tmpnb image build --from`, `tmpnb run --from`), never on the reactor. The image is
labelled with its content hash (naming.py), so a second build of the same content finds it and
returns at once.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from docker import DockerClient

from tmpnb.config import DEFAULT_IMAGE, ContainerSpec
from tmpnb.confinement import size_bytes
from tmpnb.content.binderfiles import read_binder_files
from tmpnb.content.errors import ContentError
from tmpnb.content.naming import check_repository_name, content_hash, image_name, repository_bytes, repository_files
from tmpnb.content.recipe import ERROR_MARK, HOME_MARK, make_recipe, write_context
from tmpnb.content.requirements import SERVER_LOCK, server_pins
from tmpnb.content.source import checked_out, is_url
from tmpnb.image.build import Say, ensure_image, find_labelled_image

CONTENT_LABEL = "org.tmpnb.content"
SOURCE_LABEL = "org.tmpnb.content-source"
# What a visitor's home holds at most unless the operator says otherwise (--home-size).
DEFAULT_HOME_SIZE = ContainerSpec.home_size
# The end of a failed build's output, kept for the error message.
TAIL_LINES = 12


def _quiet(message: str) -> None:
    pass


def find_content_image(client: DockerClient, name: str, digest: str) -> str | None:
    """The id of the image tagged `name` that was built from content `digest`, if any."""
    return find_labelled_image(client, name, CONTENT_LABEL, digest)


def ensure_content_image(
    client: DockerClient,
    source: str,
    name: str | None = None,
    *,
    say: Say = _quiet,
    force: bool = False,
    base: str = DEFAULT_IMAGE,
    layer_cache: bool = True,
    home_size: str = DEFAULT_HOME_SIZE,
) -> str:
    """Make sure the image of repository `source` (a folder, a bare repository or a git URL)
    exists; return its name (`tmpnb/content-<slug>:<hash12>`, or `<name>:<hash12>`).

    The repository's Binder files are checked before anything else (one ContentError naming all
    that tmpnb cannot honour); tmpnb's notebook image is built first if it is missing.
    `force` builds even when the image exists; `layer_cache=False` also makes Docker redo every
    step (benchmarks/content.py's cold build). `home_size` is the visitors' home (`--home-size`)
    the build warns about a repository larger than. `base` other than tmpnb's own image is used
    as it is (it must be one: tmpnb's server, its venv in /opt/notebook, its home skeleton).
    """
    if name is not None:
        check_repository_name(name)
    with checked_out(source, say=say) as root:
        binder = read_binder_files(root)
        for note in binder.notes:
            say(f"note: {note}")
        # tmpnb's own image is built when missing; another base is taken as it is.
        base_id = ensure_image(client, base, say=say) if base == DEFAULT_IMAGE else client.images.get(base).id
        recipe = make_recipe(binder, server_pins(), SERVER_LOCK.read_text())
        for note in recipe.notes:
            say(f"note: {note}")
        digest = content_hash(root, base_id, recipe.files)
        image = image_name(source if is_url(source) else str(Path(source).expanduser().resolve()), digest, name)
        if not force:
            found = find_content_image(client, image, digest)
            if found is not None:
                say(f"{image} is up to date (content {digest[:12]}): {found}")
                return image
        _warn_if_larger_than_home(root, home_size, say)
        with tempfile.TemporaryDirectory(prefix="tmpnb-content-context-") as context:
            write_context(Path(context), recipe, root)
            _build(client, Path(context), image, base_id, digest, source, layer_cache, home_size, say)
    return image


def _warn_if_larger_than_home(root: Path, home_size: str, say: Say) -> None:
    size = repository_bytes(root, repository_files(root))
    if size > size_bytes(home_size):
        say(
            f"warning: the repository holds {size / 1024**2:.0f} MiB, more than a visitor's home "
            f"(--home-size {home_size}): with a home that small its servers cannot start "
            "(docs/content.md, 'The home's size')"
        )


def _build(
    client: DockerClient, context: Path, image: str, base_id: str, digest: str, source: str,
    layer_cache: bool, home_size: str, say: Say,
) -> None:
    started = time.monotonic()
    say(f"docker build {image} on {base_id[:19]} (content {digest[:12]})")
    _follow(
        client.api.build(
            path=str(context),
            tag=image,
            labels={CONTENT_LABEL: digest, SOURCE_LABEL: source},
            buildargs={"BASE_IMAGE": base_id},
            network_mode="host",  # the default bridge is off on tmpnb hosts
            pull=False,
            nocache=not layer_cache,
            rm=True,
            forcerm=True,
            decode=True,
        ),
        home_size,
        say,
    )
    say(f"{image} built in {time.monotonic() - started:.0f} s")


def _follow(chunks: Iterable[dict], home_size: str, say: Say) -> None:
    """Print the build's output; turn its failure into one ContentError that says why."""
    tail: list[str] = []
    for chunk in chunks:
        if "error" in chunk:
            marked = [line[len(ERROR_MARK):] for line in tail if line.startswith(ERROR_MARK)]
            why = "\n".join(marked) if marked else "\n".join(tail[-TAIL_LINES:])
            raise ContentError(f"the build failed: {chunk['error'].strip()}\n{why}")
        text = chunk.get("stream", "").rstrip()
        if not text:
            continue
        for line in text.splitlines():
            tail.append(line)
            if line.startswith(HOME_MARK):
                _warn_about_home(int(line[len(HOME_MARK):].strip() or 0), home_size, say)
        del tail[:-200]
        say(text)


def _warn_about_home(size: int, home_size: str, say: Say) -> None:
    if size > size_bytes(home_size):
        say(
            f"warning: each visitor's home starts with {size / 1024**2:.0f} MiB (the repository and "
            f"what postBuild left), more than the home's size (--home-size {home_size}): "
            "give tmpnb a larger --home-size (docs/content.md, 'The home's size')"
        )
