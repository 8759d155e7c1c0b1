"""`tmpnb`: one command for what an operator does by hand.

    tmpnb run [--log-format text|json] [twistd tmpnb options]
                                        the service in the foreground (`twistd -n tmpnb …`)
    tmpnb run --from PATH_OR_GIT_URL [--name NAME] [twistd tmpnb options]
                                        the same, serving an image built from a Binder-style
                                        repository (built first, or reused; docs/content.md)
    tmpnb redirector [options]          a redirector in front of many nodes (`twistd -n tmpnb-redirector …`)
    tmpnb report LOG [--plot DIR]       summarise a lifecycle log (`python -m tmpnb.lifecycle report`)
    tmpnb image build | extract-static  the notebook image (`python -m tmpnb.image …`);
                                        `build --from PATH_OR_GIT_URL` a repository's image

Each subcommand hands its arguments, untouched, to the tool it stands for, so the options and
their help are that tool's own.
"""

from __future__ import annotations

import sys
import time

import docker
from docker.errors import DockerException

from tmpnb.content.builder import DEFAULT_HOME_SIZE, ensure_content_image
from tmpnb.image.build import BuildError

USAGE = __doc__.split("\n\n")[1]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    command, rest = (args[0], args[1:]) if args else ("", [])
    if command == "run":
        logger, rest = _log_format(rest)
        source, name, rest = _content_options(rest)
        leave_tls_out_unless_asked(rest)
        if source is not None:
            image = _content_image(source, name, rest)
            if image is None:
                return 1
            rest = [*rest, f"--image={image}"]
        return run_twistd(["-n", "--pidfile=", f"--logger={logger}", "tmpnb", *rest])
    if command == "redirector":
        return run_twistd(["-n", "--pidfile=", "tmpnb-redirector", *rest])
    if command == "report":
        from tmpnb.report import main as report

        return report(["report", *rest])
    if command == "image":
        from tmpnb.image.__main__ import main as image

        return image(rest)
    stream = sys.stdout if command in ("-h", "--help", "help") else sys.stderr
    stream.write(f"usage:\n{USAGE}\n")
    return 0 if stream is sys.stdout else 2


# The options whose value can make this process speak TLS (an ssl: endpoint, an https: URL).
TLS_OPTIONS = ("--listen", "--web-listen", "--proxy-api-listen", "--admin-port", "--proxy-api-url")


def leave_tls_out_unless_asked(args: list[str]) -> bool:
    """Keep pyOpenSSL and cryptography out of a node that uses no TLS: Twisted's reactor imports
    them whenever they are installed, 16 MiB of a 69 MiB idle node (benchmarks/RESULTS.md,
    footprint). Twisted treats them as optional, exactly as if they were not installed. Must run
    before Twisted's reactor is imported. True if they were left out."""
    if "OpenSSL" in sys.modules or any(value.startswith(("ssl:", "https:")) for value in _tls_values(args)):
        return False
    sys.modules["OpenSSL"] = None  # type: ignore[assignment]  # `import OpenSSL` raises ImportError
    return True


def _tls_values(args: list[str]) -> list[str]:
    """The values given to TLS_OPTIONS in `args` (`--listen X` or `--listen=X`)."""
    values = []
    for i, arg in enumerate(args):
        name, equals, value = arg.partition("=")
        if name in TLS_OPTIONS:
            values.append(value if equals else (args[i + 1] if i + 1 < len(args) else ""))
    return values


LOGGERS = {"text": "tmpnb.logs.text_observer", "json": "tmpnb.logs.json_observer"}


def _log_format(args: list[str]) -> tuple[str, list[str]]:
    """`--log-format F` (or `--log-format=F`) taken out of `args`: twistd's --logger for it."""
    chosen, rest, args = "text", [], list(args)
    while args:
        arg = args.pop(0)
        if arg == "--log-format" and args:
            chosen = args.pop(0)
        elif arg.startswith("--log-format="):
            chosen = arg.partition("=")[2]
        else:
            rest.append(arg)
    if chosen not in LOGGERS:
        raise SystemExit(f"tmpnb run: --log-format is text or json, not {chosen!r}")
    return LOGGERS[chosen], rest


def _content_options(args: list[str]) -> tuple[str | None, str | None, list[str]]:
    """`--from X` and `--name N` (or `--from=X`, `--name=N`) taken out of `args`."""
    found: dict[str, str | None] = {"--from": None, "--name": None}
    rest, args = [], list(args)
    while args:
        arg = args.pop(0)
        option, equals, value = arg.partition("=")
        if option in found and (equals or args):
            found[option] = value if equals else args.pop(0)
        else:
            rest.append(arg)
    if found["--name"] is not None and found["--from"] is None:
        raise SystemExit("tmpnb run: --name goes with --from")
    return found["--from"], found["--name"], rest


def _content_image(source: str, name: str | None, args: list[str]) -> str | None:
    """Build (or find) the image of repository `source` before the service starts: its name,
    or None after printing why not. A build runs only here, never on the reactor."""
    if any(arg == "--image" or arg.startswith("--image=") for arg in args):
        raise SystemExit("tmpnb run: --from builds the image to serve; leave --image out")
    started = time.monotonic()
    try:
        home_size = _option_value(args, "--home-size") or DEFAULT_HOME_SIZE
        image = ensure_content_image(docker.from_env(timeout=600), source, name, say=_say, home_size=home_size)
    except (BuildError, DockerException) as error:
        print(f"error: {error}", file=sys.stderr)
        return None
    _say(f"serving {image} (ready in {time.monotonic() - started:.1f} s)")
    return image


def _option_value(args: list[str], option: str) -> str | None:
    """The value given to `option` in `args` (`--option X` or `--option=X`), the last one wins."""
    value = None
    for i, arg in enumerate(args):
        name, equals, given = arg.partition("=")
        if name == option:
            value = given if equals else (args[i + 1] if i + 1 < len(args) else None)
    return value


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_twistd(arguments: list[str]) -> int:
    """twistd with `arguments`, in this process: it returns when the service has stopped."""
    from twisted.scripts.twistd import run

    sys.argv = ["twistd", *arguments]
    run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
