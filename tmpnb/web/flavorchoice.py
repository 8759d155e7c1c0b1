"""Which flavor (tmpnb/flavors.py) a request asks for, and the 404 for one the node lacks.

A page names it in its query (`/?flavor=NAME`, `/spawn/<path>?flavor=NAME`), an API call in its
JSON body (`{"flavor": "NAME"}`); none: the node's default flavor. A name the node does not
serve is answered 404 with the list of its flavors, never with a server of another flavor:
a class sent to the wrong node must not quietly work in the wrong image.
"""

from __future__ import annotations

from twisted.web.iweb import IRequest

from tmpnb.flavors import Flavor, Flavors
from tmpnb.http import replies
from tmpnb.pages import render_page

__all__ = ["asked_in_query", "unknown_flavor_json", "unknown_flavor_page"]

# Longer than any flavor's name ([a-z0-9-]{1,32}): kept whole in the answer would echo a stranger's text.
_SHOWN = 40


def asked_in_query(request: IRequest, flavors: Flavors) -> tuple[Flavor | None, str | None]:
    """(the flavor asked for with ?flavor=, or the default one; the name asked for). The
    flavor is None when the node has no such one (or the query names several)."""
    values = (request.args or {}).get(b"flavor")
    if not values:
        return flavors.get(None), None
    name = values[0].decode("utf-8", "replace")
    if len(values) > 1:
        return None, name
    return flavors.get(name), name


def unknown_flavor_page(request: IRequest, flavors: Flavors, name: str) -> bytes:
    listing = ", ".join(flavors.names())
    return replies.html(request, 404, render_page("noflavor", "No such flavor", flavor=name[:_SHOWN], flavors=listing))


def unknown_flavor_json(request: IRequest, flavors: Flavors, name: object) -> bytes:
    # A value that is not a string is not repeated: it is no name, and could be long.
    error = f"no flavor {name[:_SHOWN]!r} on this node" if isinstance(name, str) else '"flavor" is not a name'
    return replies.json_reply(request, 404, {"error": error, "flavors": flavors.names()})
