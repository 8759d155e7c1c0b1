"""A throwaway PostgreSQL server for tests: Debian's initdb/pg_ctl in a temporary directory.

Unix socket only (listen_addresses=''), run as the `postgres` user (initdb refuses root),
stopped and removed when the context ends.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

USER = "postgres"


def binaries() -> str | None:
    """The directory with initdb and pg_ctl (the newest installed), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return os.path.dirname(found[-1]) if found else None


def _as_user(argv: list[str]) -> list[str]:
    return argv if os.geteuid() != 0 else ["runuser", "-u", USER, "--", *argv]


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a server; yields its libpq URL (a unix socket in the temporary directory)."""
    bin_dir = binaries()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
    root = tempfile.mkdtemp(prefix="tnbpg", dir="/tmp")
    data = os.path.join(root, "data")
    try:
        if os.geteuid() == 0:
            shutil.chown(root, USER, USER)
        subprocess.run(_as_user([f"{bin_dir}/initdb", "-D", data, "-A", "trust", "-U", USER, "--no-sync"]),
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        options = f"-c listen_addresses='' -k {root} -c fsync=off"
        subprocess.run(_as_user([f"{bin_dir}/pg_ctl", "-D", data, "-o", options, "-w", "-t", "60",
                                 "-l", os.path.join(root, "log"), "start"]),
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            yield f"postgresql:///postgres?host={root}&user={USER}"
        finally:
            subprocess.run(_as_user([f"{bin_dir}/pg_ctl", "-D", data, "-m", "fast", "-w", "stop"]),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finally:
        shutil.rmtree(root, ignore_errors=True)
