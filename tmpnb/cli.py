"""`tmpnb`: one command for what an operator does by hand.

    tmpnb run [twistd tmpnb options]    the service in the foreground (`twistd -n tmpnb …`)
    tmpnb redirector [options]          a redirector in front of many nodes (`twistd -n tmpnb-redirector …`)
    tmpnb report LOG [--plot DIR]       summarise a lifecycle log (`python -m tmpnb.lifecycle report`)
    tmpnb image build | extract-static  the notebook image (`python -m tmpnb.image …`)

Each subcommand hands its arguments, untouched, to the tool it stands for, so the options and
their help are that tool's own.
"""

from __future__ import annotations

import sys

USAGE = __doc__.split("\n\n")[1]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    command, rest = (args[0], args[1:]) if args else ("", [])
    if command == "run":
        return run_twistd(["-n", "--pidfile=", "tmpnb", *rest])
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


def run_twistd(arguments: list[str]) -> int:
    """twistd with `arguments`, in this process: it returns when the service has stopped."""
    from twisted.scripts.twistd import run

    sys.argv = ["twistd", *arguments]
    run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
