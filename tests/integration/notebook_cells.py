"""Run every cell of a notebook that sits in a visitor's server, through that server's REST API and
kernel websocket (as the notebook UI does), and compare what each printed with the outputs the
notebook recorded. Shared by the content tests; plain blocking code like tmpnb_process.py."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from urllib.parse import quote

import websocket

from tmpnb_process import TmpnbError, auth, call, send_execute_request


@dataclass
class CellRun:
    source: str
    recorded: list[dict]  # the notebook's own outputs for the cell
    outputs: list[dict]  # what running it in the visitor's server gave

    def error(self) -> dict | None:
        return next((o for o in self.outputs if o["output_type"] == "error"), None)


def text_of(outputs: list[dict]) -> str:
    """What a reader sees of `outputs` as text: streams and text/plain results, in order."""
    parts = []
    for output in outputs:
        if output["output_type"] == "stream":
            text = output["text"]
            parts.append("".join(text) if isinstance(text, list) else text)
        elif output["output_type"] in ("execute_result", "display_data") and "text/plain" in output["data"]:
            plain = output["data"]["text/plain"]
            parts.append(("".join(plain) if isinstance(plain, list) else plain) + "\n")
        elif output["output_type"] == "error":
            parts.append(f"{output['ename']}: {output['evalue']}\n")
    return "".join(parts)


def run_notebook(base: str, prefix: str, token: str, path: str, timeout: float = 120) -> list[CellRun]:
    """Every code cell of `path` (read from the server's contents API, so from the container's
    home), run in order in a kernel of a session on that notebook; stops at the first error."""
    reply = call(base, "GET", f"{prefix}api/contents/{quote(path)}?content=1", headers=auth(token))
    if reply.status != 200:
        raise TmpnbError(f"{path} is not in the visitor's home: {reply.status} {reply.body[:200]!r}")
    cells = reply.json()["content"]["cells"]
    session = call(base, "POST", f"{prefix}api/sessions", json.dumps(
        {"path": path, "type": "notebook", "name": path, "kernel": {"name": "python3"}}).encode(), auth(token))
    if session.status != 201:
        raise TmpnbError(f"no session: {session.status} {session.body[:300]!r}")
    kernel_id = session.json()["kernel"]["id"]
    ws = websocket.create_connection(
        base.replace("http://", "ws://") + f"{prefix}api/kernels/{kernel_id}/channels?token={token}", timeout=timeout)
    runs = []
    try:
        for cell in cells:
            if cell["cell_type"] != "code":
                continue
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            run = CellRun(source, cell.get("outputs", []), execute_cell(ws, source, timeout))
            runs.append(run)
            if run.error() is not None:
                break
    finally:
        ws.close()
    return runs


def execute_cell(ws: websocket.WebSocket, code: str, timeout: float) -> list[dict]:
    """Run `code` on an open kernel channels websocket; its outputs, nbformat-shaped."""
    msg_id = send_execute_request(ws, code, store_history=True)  # as the notebook UI runs a cell
    outputs: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = json.loads(ws.recv())
        if message["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = message["msg_type"], message["content"]
        if kind == "stream":
            if outputs and outputs[-1]["output_type"] == "stream" and outputs[-1]["name"] == content["name"]:
                outputs[-1]["text"] += content["text"]  # one stream output, as the UI shows it
            else:
                outputs.append({"output_type": "stream", "name": content["name"], "text": content["text"]})
        elif kind in ("execute_result", "display_data"):
            outputs.append({"output_type": kind, "data": content["data"]})
        elif kind == "error":
            outputs.append({"output_type": "error", "ename": content["ename"], "evalue": content["evalue"]})
        elif kind == "status" and content["execution_state"] == "idle":
            return outputs
    raise TmpnbError(f"{code!r}: no reply within {timeout:g}s")
