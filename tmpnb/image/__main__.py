"""`python -m tmpnb.image build | extract-static DEST`: the notebook image from the command line."""

from __future__ import annotations

import argparse
import sys
import time

import docker
from docker.errors import DockerException

from tmpnb.config import DEFAULT_IMAGE
from tmpnb.content.builder import ensure_content_image
from tmpnb.image.build import BuildError, ensure_image
from tmpnb.image.static import NoStaticLayout, extract_static


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tmpnb.image", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    build = commands.add_parser("build", help="build the notebook image unless it is up to date")
    build.add_argument("--image", default=DEFAULT_IMAGE, help="tag (default %(default)s); with --from, "
                       "the notebook image to build on")
    build.add_argument("--force", action="store_true", help="rebuild even when up to date")
    build.add_argument("--mirror", help="Debian mirror for the base (default: apt's)")
    build.add_argument("--quiet", action="store_true", help="print only the image id")
    build.add_argument(
        "--from", dest="source", metavar="PATH_OR_GIT_URL",
        help="build an image of a Binder-style repository (a folder or a git URL) on the notebook "
        "image instead, and print its name last (docs/content.md)",
    )
    build.add_argument(
        "--name", help="with --from: the image's repository name (default tmpnb/content-<folder>); "
        "its tag is always the content hash",
    )

    extract = commands.add_parser("extract-static", help="copy the image's static files out")
    extract.add_argument("dest", help="directory to fill (created if missing)")
    extract.add_argument("--image", default=DEFAULT_IMAGE, help="image (default %(default)s)")

    node = commands.add_parser("build-node", help="build the node image (tmpnb itself, for Swarm)")
    node.add_argument("--image", default="tmpnb/node:latest", help="tag (default %(default)s)")
    node.add_argument("--quiet", action="store_true", help="print only the image id")

    args = parser.parse_args(argv)
    say = _quiet if getattr(args, "quiet", False) else _say
    started = time.monotonic()
    try:
        client = docker.from_env(timeout=600)  # a cold build streams for minutes
        if args.command == "build" and args.source is not None:
            image = ensure_content_image(client, args.source, args.name, say=say, force=args.force, base=args.image)
            say(f"done in {time.monotonic() - started:.1f} s")
            print(image)  # last: `$(tmpnb image build --from …)` is the image's name
            return 0
        elif args.command == "build":
            if args.name is not None:
                parser.error("--name goes with --from")
            image_id = ensure_image(client, args.image, args.force, say=say, mirror=args.mirror)
            print(image_id)
        elif args.command == "build-node":
            from tmpnb.image.node import ensure_node_image

            print(ensure_node_image(client, args.image, say=say))
        else:
            manifest = extract_static(client, args.dest, args.image)
            for prefix, directory in sorted(manifest.items()):
                say(f"{prefix} -> {args.dest}/{directory}")
    except (BuildError, NoStaticLayout, DockerException) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    say(f"done in {time.monotonic() - started:.1f} s")
    return 0


def _quiet(message: str) -> None:
    pass


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
