"""A second notebook image for the flavor tests, built from a tiny Dockerfile on top of the
notebook image: a marker file and index.ipynb (opened at notebooks/index.ipynb: the notebook
UI's URL for it) in the home skeleton (the home is a
tmpfs filled from /opt/notebook/share/tmpnb/home at start, tmpnb/image/Dockerfile), and a
label. Built with docker-py, network mode none (nothing is downloaded); removed by the caller."""

from __future__ import annotations

import io
import json
import secrets
import tarfile

SKELETON = "/opt/notebook/share/tmpnb/home"
MARKER_NAME = "flavor-marker.txt"
# A static file only this image has, served under /user/<id>/static/lab/ (docs/image.md).
STATIC_NAME = "flavor-static.txt"
LAB_STATIC = "/opt/notebook/share/jupyter/lab/static"
LABEL = "org.tmpnb.test-flavor"

# The notebook's one cell reads the marker from the visitor's home: only this image has it.
INDEX = {
    "cells": [{
        "cell_type": "code", "execution_count": None, "id": "marker", "metadata": {}, "outputs": [],
        "source": [f"open('{MARKER_NAME}').read().strip().upper()"],
    }],
    "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
    "nbformat": 4, "nbformat_minor": 5,
}


def _context(base: str, marker: str) -> io.BytesIO:
    dockerfile = (
        f"FROM {base}\n"
        f"COPY --chown=1000:1000 {MARKER_NAME} {SKELETON}/{MARKER_NAME}\n"
        f"COPY --chown=1000:1000 index.ipynb {SKELETON}/index.ipynb\n"
        f"COPY {STATIC_NAME} {LAB_STATIC}/{STATIC_NAME}\n"
        f"LABEL {LABEL}={marker}\n"
    )
    files = {"Dockerfile": dockerfile, MARKER_NAME: marker + "\n", "index.ipynb": json.dumps(INDEX),
             STATIC_NAME: f"{marker} static, from its container\n"}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


def build_marked_image(client, base: str, marker: str) -> str:
    """Build the image (a fresh tag each time); its tag."""
    tag = f"tmpnb-test/flavor-{marker}:{secrets.token_hex(4)}"
    client.images.build(fileobj=_context(base, marker), custom_context=True, tag=tag, network_mode="none",
                        rm=True, forcerm=True, pull=False)
    return tag


def remove_image(client, tag: str) -> None:
    try:
        client.images.remove(tag, force=True, noprune=False)
    except Exception:  # already gone: nothing to clean
        pass
