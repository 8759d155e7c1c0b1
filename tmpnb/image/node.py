"""Build the node image (tmpnb itself, for `twistd tmpnb` and `twistd tmpnb-redirector` under
Docker Swarm) on the notebook image's Debian base, without any registry.

Skipped when an image of that name built from the same source already exists (a label holds
the sha256 of tmpnb's source). Hosts get it with `docker save IMAGE | docker -H HOST load`.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

from docker import DockerClient

from tmpnb.image.build import HOST_CA_BUNDLE, Say, _follow_build, _quiet, ensure_base

DEFAULT_NODE_IMAGE = "tmpnb/node:latest"
NODE_RECIPE_LABEL = "org.tmpnb.node-recipe"
DOCKERFILE = Path(__file__).resolve().parent / "node" / "Dockerfile"
SOURCE_ROOT = Path(__file__).resolve().parents[2]  # a checkout: pyproject.toml, tmpnb/, twisted/
SOURCE_ENTRIES = ("pyproject.toml", "README.md", "tmpnb", "twisted")


def source_files(root: Path = SOURCE_ROOT) -> list[Path]:
    files = []
    for entry in SOURCE_ENTRIES:
        path = root / entry
        candidates = [path] if path.is_file() else sorted(path.rglob("*"))
        files += [p for p in candidates if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"]
    return files


def node_recipe_hash(root: Path = SOURCE_ROOT) -> str:
    digest = hashlib.sha256(DOCKERFILE.read_bytes())
    for path in source_files(root):
        content = path.read_bytes()
        digest.update(f"\0{path.relative_to(root).as_posix()}\0{len(content)}\0".encode())
        digest.update(content)
    return digest.hexdigest()


def ensure_node_image(client: DockerClient, name: str = DEFAULT_NODE_IMAGE, *, say: Say = _quiet,
                      root: Path = SOURCE_ROOT) -> str:
    """The id of `name` built from this source, building it (about a minute) if needed."""
    digest = node_recipe_hash(root)
    built = client.images.list(filters={"label": f"{NODE_RECIPE_LABEL}={digest}"})
    for image in built:
        if name in image.tags:
            say(f"{name} is up to date (source {digest[:12]}): {image.id}")
            return image.id
    if built:  # the same source built under another name (the swarm test's, a benchmark's)
        repository, _, tag = name.rpartition(":") if ":" in name.rsplit("/", 1)[-1] else (name, "", "latest")
        built[0].tag(repository, tag)
        say(f"{name} tagged from {built[0].id} (source {digest[:12]})")
        return built[0].id
    base = ensure_base(client, say=say)
    with tempfile.TemporaryDirectory(prefix="tmpnb-node-") as context:
        for path in source_files(root):
            target = Path(context, "src", path.relative_to(root))
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        shutil.copyfile(DOCKERFILE, Path(context, "Dockerfile"))
        ca_bundle = Path(context, "build-ca.crt")
        if HOST_CA_BUNDLE.exists():
            shutil.copyfile(HOST_CA_BUNDLE, ca_bundle)
        else:
            ca_bundle.write_bytes(b"")
        say(f"docker build {name} on {base} (source {digest[:12]})")
        _follow_build(client.api.build(path=context, tag=name, labels={NODE_RECIPE_LABEL: digest},
                                       buildargs={"BASE_IMAGE": base}, network_mode="host", pull=False,
                                       rm=True, forcerm=True, decode=True), say)
    return client.images.get(name).id
