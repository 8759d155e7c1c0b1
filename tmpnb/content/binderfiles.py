"""A repository's Binder files (repo2docker's layout), read and checked before anything is built.

Like repo2docker, the files are looked up in `binder/` or `.binder/` when the repository has one
(and then only there), else at its root. tmpnb honours `requirements.txt`, `apt.txt`,
`postBuild`, `runtime.txt` (when it names the image's Python) and `start`; every file it cannot
honour is named, with every malformed line, in ONE `ContentError` raised before any build step:
a teacher fixes them all at once and nothing is silently ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from tmpnb.content.errors import ContentError
from tmpnb.content.requirements import check_requirements

CONFIG_DIRS = ("binder", ".binder")

# The Python of tmpnb's notebook image (Debian bookworm's); the build checks it is still true.
IMAGE_PYTHON = (3, 11)

# What repo2docker would do with each of these, and why tmpnb does not.
UNSUPPORTED = {
    "environment.yml": "a conda environment (conda's channels cannot be reached from tmpnb's builds)",
    "Dockerfile": "a Dockerfile of its own (build that image yourself and pass --image)",
    "install.R": "R packages (tmpnb's image has no R)",
    "DESCRIPTION": "an R package (tmpnb's image has no R)",
    "Project.toml": "a Julia environment (tmpnb's image has no Julia)",
    "JuliaProject.toml": "a Julia environment (tmpnb's image has no Julia)",
    "REQUIRE": "Julia packages (tmpnb's image has no Julia)",
    "Pipfile": "a pipenv environment (write a requirements.txt instead)",
    "Pipfile.lock": "a pipenv environment (write a requirements.txt instead)",
    "default.nix": "a Nix environment (tmpnb's image has no Nix)",
    "manifest.scm": "a Guix environment (tmpnb's image has no Guix)",
}
# repo2docker installs the repository itself as a package from these, at the root only.
UNSUPPORTED_AT_ROOT = {
    "setup.py": "installing the repository as a Python package (list what it needs in requirements.txt)",
    "pyproject.toml": "installing the repository as a Python package (list what it needs in requirements.txt)",
}
HONOURED = ("requirements.txt", "apt.txt", "postBuild", "runtime.txt", "start")

# A Debian package name (Debian Policy 5.6.1): apt-get gets them as arguments, so nothing else.
DEBIAN_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]+")
RUNTIME = re.compile(r"python-(\d+)\.(\d+)(?:\.\d+)?")


@dataclass(frozen=True)
class BinderFiles:
    """What a repository asks for, as tmpnb will honour it. Paths are relative to the root."""

    root: Path
    config_dir: str  # "binder", ".binder" or "" (the root)
    apt_packages: tuple[str, ...] = ()
    requirements: str | None = None
    post_build: str | None = None
    start: str | None = None
    runtime: str | None = None  # runtime.txt's content, stripped
    # What the teacher should know but does not stop the build (printed before it).
    notes: tuple[str, ...] = field(default=())


def config_dir_of(root: Path) -> str:
    """Where the Binder files are: "binder", ".binder" or "" (the root)."""
    present = [name for name in CONFIG_DIRS if (root / name).is_dir()]
    if len(present) > 1:
        raise ContentError(
            "the repository has both binder/ and .binder/: repo2docker refuses that too; keep one"
        )
    return present[0] if present else ""


def read_binder_files(root: Path) -> BinderFiles:
    """The repository's Binder files, checked; raises one ContentError naming every problem."""
    config_dir = config_dir_of(root)
    where = root / config_dir if config_dir else root
    prefix = f"{config_dir}/" if config_dir else ""
    problems: list[str] = []
    notes: list[str] = []

    for name, why in UNSUPPORTED.items():
        if _is_file(where / name):
            problems.append(f"{prefix}{name}: {why}")
    if not config_dir:
        for name, why in UNSUPPORTED_AT_ROOT.items():
            if _is_file(root / name):
                problems.append(f"{name}: {why}")
    else:
        ignored = [n for n in (*HONOURED, *UNSUPPORTED, *UNSUPPORTED_AT_ROOT) if _is_file(root / n)]
        if ignored:
            notes.append(
                f"{config_dir}/ holds the Binder files, so (as repo2docker does) these at the root "
                f"are not used: {', '.join(ignored)}"
            )

    def present(name: str) -> str | None:
        path = where / name
        if path.is_symlink() or (path.exists() and not path.is_file()):
            problems.append(f"{prefix}{name}: must be a regular file")
            return None
        return f"{prefix}{name}" if path.is_file() else None

    apt = present("apt.txt")
    packages = _apt_packages(root / apt, apt, problems) if apt else ()
    requirements = present("requirements.txt")
    if requirements:
        problems += [str(p) for p in check_requirements(root / requirements, requirements)]
    runtime_file = present("runtime.txt")
    runtime = None
    if runtime_file:
        runtime = (root / runtime_file).read_text(errors="replace").strip()
        note = _runtime_note(runtime, runtime_file, problems)
        if note:
            notes.append(note)

    if problems:
        raise ContentError(
            "tmpnb cannot build this repository as it is; it holds what tmpnb cannot honour:\n  "
            + "\n  ".join(problems)
            + "\n(tmpnb honours requirements.txt, apt.txt, postBuild, runtime.txt and start: docs/content.md)"
        )
    return BinderFiles(
        root=root,
        config_dir=config_dir,
        apt_packages=packages,
        requirements=requirements,
        post_build=present("postBuild"),
        start=present("start"),
        runtime=runtime,
        notes=tuple(notes),
    )


def _is_file(path: Path) -> bool:
    return path.is_file() or path.is_symlink()


def _apt_packages(path: Path, name: str, problems: list[str]) -> tuple[str, ...]:
    packages = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        if DEBIAN_PACKAGE.fullmatch(text):
            packages.append(text)
        else:
            problems.append(f"{name} line {number}: {text[:80]!r} is not one Debian package name")
    return tuple(dict.fromkeys(packages))


def _runtime_note(runtime: str, name: str, problems: list[str]) -> str | None:
    image = ".".join(map(str, IMAGE_PYTHON))
    match = RUNTIME.fullmatch(runtime)
    if match is None:
        problems.append(
            f"{name}: {runtime[:80]!r} asks for another language or form than python-3.X "
            "(tmpnb's image has Python only)"
        )
        return None
    wanted = (int(match.group(1)), int(match.group(2)))
    if wanted == IMAGE_PYTHON:
        return None
    return (
        f"{name} asks for Python {wanted[0]}.{wanted[1]}; tmpnb's image has Python {image} only "
        f"(its builds cannot download another): Python {image} is used"
    )

