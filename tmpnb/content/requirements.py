"""A repository's requirements.txt next to the server's own pinned packages.

The repository's packages go into the server's environment (/opt/notebook, as repo2docker puts
them into the notebook's), so the server's packages must keep the versions tmpnb pins
(tmpnb/image/requirements.txt): uv installs with that lock as its constraints. A full lock such
as pip-compile writes also pins what the server is made of (`packaging==24.2`,
`python-dateutil==2.9.0.post0`...): such a line, when the server's pinned version does not
satisfy it, is left out and named in a build message; the server's version is kept. A package of
the repository that needs another version of a server package than the pinned one is a real
conflict: uv refuses it, and the build fails with one error naming it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from tmpnb.image.build import RECIPE_DIR

SERVER_LOCK = RECIPE_DIR / "requirements.txt"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)", re.MULTILINE)


# Options that name another file or the repository itself: uv would look for them in the build's
# scratch directory, where only requirements.txt is.
INCLUDES = {
    "-r": "includes another file: put its lines in requirements.txt",
    "--requirement": "includes another file: put its lines in requirements.txt",
    "-c": "includes a constraints file: put its pins in requirements.txt",
    "--constraint": "includes a constraints file: put its pins in requirements.txt",
    "-e": "installs a path in editable mode: list the packages it needs instead",
    "--editable": "installs a path in editable mode: list the packages it needs instead",
}


@dataclass(frozen=True)
class RequirementsProblem:
    """A line of requirements.txt that tmpnb cannot install."""

    file: str
    line: int
    why: str

    def __str__(self) -> str:
        return f"{self.file} line {self.line}: {self.why}"


def server_pins(lock: Path = SERVER_LOCK) -> dict[str, str]:
    """The server's pinned packages: canonical name → version."""
    return {canonicalize_name(name): version for name, version in _PIN.findall(lock.read_text())}


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, line) with `\\` continuations joined, as pip reads them."""
    lines: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        if not pending:
            start = number
        if raw.endswith("\\"):
            pending += raw[:-1] + " "
            continue
        lines.append((start, pending + raw))
        pending = ""
    if pending:
        lines.append((start, pending))
    return lines


def _requirement_part(line: str) -> str:
    """The line without its comment and per-requirement options (`--hash=...`)."""
    text = re.sub(r"(^|\s)#.*", "", line).strip()
    return re.split(r"\s+--?[A-Za-z]", " " + text, maxsplit=1)[0].strip()


def check_requirements(path: Path, name: str) -> list[RequirementsProblem]:
    """The lines of requirements.txt tmpnb refuses before building: requirements that need git
    (the image has none) or that are not requirements at all."""
    problems = []
    for number, line in logical_lines(path.read_text(errors="replace")):
        text = _requirement_part(line)
        if line.lstrip().startswith("-"):
            option = line.split()[0].split("=", 1)[0]
            if option in INCLUDES:
                problems.append(RequirementsProblem(name, number, f"{option} {INCLUDES[option]}"))
            continue  # another option uv reads (--index-url, --extra-index-url, --pre...)
        if not text:
            continue
        if text.startswith(("git+", "hg+", "svn+", "bzr+")):
            problems.append(RequirementsProblem(name, number, f"{text[:80]!r} needs a version control tool the image does not have"))
            continue
        if text.startswith((".", "/", "~")):
            problems.append(RequirementsProblem(name, number, f"{text[:80]!r} installs a path: list the packages it needs instead"))
            continue
        if _is_path_or_url(text):
            continue  # an archive or wheel URL: uv downloads it
        try:
            Requirement(text)
        except InvalidRequirement as error:
            problems.append(RequirementsProblem(name, number, f"not a requirement: {error}"))
    return problems


def _is_path_or_url(text: str) -> bool:
    """A bare path or URL (`name @ URL` is a requirement, with a name)."""
    return text.startswith((".", "/", "~")) or ("://" in text and "@" not in text.split("://", 1)[0])


def yield_to_server(text: str, pins: dict[str, str]) -> tuple[str, list[str]]:
    """requirements.txt without the lines the server's pins override; (new text, notes).

    A requirement naming a server package that its pinned version does not satisfy (or that
    points at a file or URL instead of the index) is left out: the pinned version is installed."""
    kept, notes = [], []
    for number, line in logical_lines(text):
        requirement = _parse(line)
        if requirement is None:
            kept.append(line)
            continue
        pinned = pins.get(canonicalize_name(requirement.name))
        if pinned is None:
            kept.append(line)
            continue
        fits = requirement.url is None and requirement.specifier.contains(pinned, prereleases=True)
        if fits:
            kept.append(line)
            continue
        notes.append(
            f"line {number}: {_requirement_part(line)} is left out: the server needs "
            f"{requirement.name}=={pinned}, which is kept"
        )
    return "\n".join(kept) + "\n", notes


def _parse(line: str) -> Requirement | None:
    text = _requirement_part(line)
    if not text or line.lstrip().startswith("-") or _is_path_or_url(text):
        return None
    try:
        return Requirement(text)
    except InvalidRequirement:
        return None
