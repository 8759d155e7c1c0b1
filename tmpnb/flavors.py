"""Flavors: several notebook images served by one node, each with its own pool and line.

`--flavor NAME=IMAGE[,pool-size=N][,landing=PATH][,static-dir=DIR]` (repeatable) names one;
`--default-flavor NAME` says which one a visitor who names none gets (the first by default).
Without `--flavor` a node has exactly one flavor, `default`, made of `--image` and
`--pool-size`, and behaves as it always did.

This module only parses and holds them: the pool (tmpnb/pool.py) keeps each flavor's
containers, the waiting line (tmpnb/waitingline.py) each flavor's visitors, both inside the
node's one --capacity. A flavor's name reaches Docker as the container label FLAVOR_LABEL
(tmpnb/dockerrecipe.py) and the proxy as the route's "flavor" (its static files).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from urllib.parse import quote

from tmpnb.dockerrecipe import FLAVOR_LABEL
from tmpnb.options import flavor_name

__all__ = ["DEFAULT_FLAVOR", "FLAVOR_LABEL", "Flavor", "FlavorError", "Flavors", "parse_flavor", "flavors_from_options"]

DEFAULT_FLAVOR = "default"
_KEYS = ("pool-size", "landing", "static-dir")
_SEGMENT_SAFE = "!$&'()*+,;=:@~"  # as tmpnb.web.paths: RFC 3986's unencoded segment characters
MAX_LANDING = 1024


class FlavorError(ValueError):
    """A --flavor or --default-flavor that cannot be served."""


@dataclass(frozen=True)
class Flavor:
    name: str
    image: str
    pool_size: int
    landing: str | None = None  # below /user/<id>/: the visitor's landing page, else the node's
    static_dir: str | None = None  # its image's static files (tmpnb.image extract-static)


def valid_name(name: str) -> bool:
    return flavor_name(name) is not None


def landing_path(text: str) -> str:
    """A landing page as a safe, percent-encoded path below /user/<id>/ (as tmpnb.web.paths
    makes them): no scheme, no leading `/`, no `.` or `..` segment, no control character."""
    if not text or text.startswith("/") or ":" in text.split("/", 1)[0] or "?" in text or "#" in text:
        raise FlavorError(f"landing={text!r} must be a relative path inside the server, e.g. notebooks/Lesson1.ipynb")
    names = text.split("/")
    if any(n in (".", "..") or "\\" in n or any(ord(c) < 0x20 or ord(c) == 0x7F for c in n) for n in names):
        raise FlavorError(f"landing={text!r} is not allowed: no . or .. segments, backslashes or control characters")
    kept = [n for n in names if n]
    path = "/".join(quote(n, safe=_SEGMENT_SAFE) for n in kept) + ("/" if names[-1] == "" else "")
    if len(path) > MAX_LANDING:
        raise FlavorError(f"landing={text!r} is too long")
    return path


def parse_flavor(spec: str, default_pool_size: int) -> Flavor:
    """One --flavor value: `NAME=IMAGE[,pool-size=N][,landing=PATH][,static-dir=DIR]`."""
    name, eq, rest = spec.partition("=")
    if not eq or not valid_name(name):
        raise FlavorError(f"--flavor {spec!r}: want NAME=IMAGE[,pool-size=N][,landing=PATH], NAME of a-z 0-9 - (1 to 32)")
    image, *pairs = rest.split(",")
    if not image or any(c.isspace() for c in image) or "=" in image:
        raise FlavorError(f"--flavor {spec!r}: no image after {name}=")
    given: dict[str, str] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or key not in _KEYS:
            raise FlavorError(f"--flavor {spec!r}: unknown setting {pair!r} (known: {', '.join(_KEYS)})")
        if key in given:
            raise FlavorError(f"--flavor {spec!r}: {key} given twice")
        given[key] = value
    pool_size = default_pool_size
    if "pool-size" in given:
        try:
            pool_size = int(given["pool-size"])
        except ValueError:
            pool_size = -1
        if pool_size < 0:
            raise FlavorError(f"--flavor {spec!r}: pool-size must be a whole number >= 0")
    landing = landing_path(given["landing"]) if "landing" in given else None
    static_dir = given.get("static-dir") or None
    return Flavor(name, image, pool_size, landing, static_dir)


@dataclass(frozen=True)
class Flavors:
    """The flavors of one node, in the order given, and the default one."""

    flavors: tuple[Flavor, ...]
    default: str
    _by_name: dict[str, Flavor] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name = {f.name: f for f in self.flavors}
        if not self.flavors or len(by_name) != len(self.flavors):
            raise FlavorError("each --flavor needs a name of its own")
        if self.default not in by_name:
            raise FlavorError(f"--default-flavor {self.default!r} is not one of the flavors: {', '.join(by_name)}")
        object.__setattr__(self, "_by_name", by_name)

    @classmethod
    def single(cls, image: str, pool_size: int, static_dir: str | None = None) -> Flavors:
        """A node without --flavor: one flavor, `default`."""
        return cls((Flavor(DEFAULT_FLAVOR, image, pool_size, None, static_dir),), DEFAULT_FLAVOR)

    def __iter__(self) -> Iterator[Flavor]:
        return iter(self.flavors)

    def __len__(self) -> int:
        return len(self.flavors)

    def names(self) -> list[str]:
        return [f.name for f in self.flavors]

    def get(self, name: str | None) -> Flavor | None:
        """The flavor a visitor asked for (None: the default); None if there is no such one."""
        if name is None:
            return self._by_name[self.default]
        return self._by_name.get(name)

    def pool_size(self) -> int:
        return sum(f.pool_size for f in self.flavors)

    def static_dirs(self) -> dict[str, str]:
        return {f.name: f.static_dir for f in self.flavors if f.static_dir}


def flavors_from_options(options: Mapping[str, Any], defaults: Iterable[str] = ()) -> Flavors:
    """The node's flavors from `--flavor`, `--default-flavor`, `--image`, `--pool-size` and
    `--static-dir`. Raises FlavorError for a mix that could mean two things: `--flavor` with an
    `--image` that is none of the flavors' (an `--image` naming one of them says nothing more),
    a `--static-dir` (whose image's?), or a `--pool-size` (whose?). `defaults`: the options
    still at their default value."""
    specs = list(options.get("flavor") or [])
    default = options.get("default-flavor")
    if not specs:
        if default not in (None, DEFAULT_FLAVOR):
            raise FlavorError(f"--default-flavor {default!r} without --flavor: the only flavor is {DEFAULT_FLAVOR!r}")
        return Flavors.single(options["image"], options["pool-size"], options.get("static-dir"))
    unset = set(defaults)
    if "static-dir" not in unset and options.get("static-dir"):
        raise FlavorError("--static-dir with --flavor: give each flavor its own (--flavor NAME=IMAGE,static-dir=DIR)")
    if "pool-size" not in unset:
        raise FlavorError("--pool-size with --flavor: give each flavor its own (--flavor NAME=IMAGE,pool-size=N)")
    flavors = [parse_flavor(spec, options["pool-size"]) for spec in specs]
    if "image" not in unset and options.get("image") not in {f.image for f in flavors}:
        raise FlavorError(f"--image {options.get('image')} with --flavor: it is none of the flavors' images;"
                          " name each flavor's image in its --flavor NAME=IMAGE")
    return Flavors(tuple(flavors), default or flavors[0].name)
