"""`jupyter notebook`, with the modules no visitor's request needs imported on first use.

The server imports these at start only to have them at hand for features tmpnb never
configures. Every idle server in the pool paid for them (3.4 MiB of its 43 MiB, measured in
docs/image.md "Start-up time and idle memory"); deferred, they load the moment anything
touches them, so nothing is lost.
"""

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence

# Each one is bound with a plain `import name` and only used inside functions.
DEFERRED = frozenset(
    {
        # jupyterlab_server.listings_handler: fetches extension allow/block lists when
        # `LabServerApp.blocked_extensions_uris`/`allowed_extensions_uris` are set; they are
        # not (and there is no network). With it go urllib3, charset_normalizer (and its CJK
        # codecs), idna and certifi.
        "requests",
        # jupyter_server.gateway.managers: talks to a remote kernel gateway, none configured.
        "websocket",
    }
)


class DeferredImports(importlib.abc.MetaPathFinder):
    """Finds DEFERRED modules as usual, but hands them out unexecuted (importlib's LazyLoader)."""

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name not in DEFERRED:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = importlib.util.LazyLoader(spec.loader)
        return spec


if __name__ == "__main__":
    sys.meta_path.insert(0, DeferredImports())
    # What /opt/notebook/bin/jupyter-notebook runs.
    from notebook.app import main

    sys.exit(main())
