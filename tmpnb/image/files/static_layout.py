"""Write which image directories the notebook server serves static files from (build time).

Runs inside the image build. It asks the server itself: it builds the Tornado application
with every enabled extension, exactly as `jupyter notebook` would, and lists the routes served
by file handlers under base_url. The result, {"<url prefix under base_url>": [directories,
first match wins]}, lets `python -m tmpnb.image extract-static` copy the files out of the
image without running it, and tmpnb's proxy serve them for every container.
"""

import json
import os
import re
import sys
import tempfile

from jupyter_server.base.handlers import FileFindHandler
from jupyter_server.serverapp import ServerApp

# No characters re.escape would change: Tornado escapes the static_path prefix, not the others.
BASE_URL = "/baseurl/"


def static_routes() -> dict[str, list[str]]:
    app = ServerApp()
    app.initialize(
        argv=[f"--ServerApp.base_url={BASE_URL}", "--ServerApp.open_browser=False"],
        find_extensions=True,
        new_httpserver=False,
    )
    layout: dict[str, list[str]] = {}
    for rule in _rules(app.web_app.default_router):
        pattern = rule.matcher.regex.pattern
        match = re.fullmatch(BASE_URL + r"([\w/-]*/)\(\.\*\)\$", pattern)
        if match is None or not issubclass(rule.target, FileFindHandler):
            continue
        paths = rule.target_kwargs["path"]
        paths = [paths] if isinstance(paths, str) else paths
        home = os.path.expanduser("~")
        # Only what the image ships: per-user directories belong to each container.
        existing = [p for p in paths if os.path.isdir(p) and not p.startswith(home)]
        if existing:
            layout.setdefault(match.group(1), existing)  # Tornado: the first route wins
    return layout


def _rules(router):
    for rule in router.rules:
        if hasattr(rule.target, "rules"):
            yield from _rules(rule.target)
        elif isinstance(rule.target, type):
            yield rule


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as home:
        os.environ["HOME"] = home  # the server writes its runtime files there
        os.environ["JUPYTER_RUNTIME_DIR"] = home
        layout = static_routes()
    with open(sys.argv[1], "w") as out:
        json.dump(layout, out, indent=1, sort_keys=True)
        out.write("\n")
