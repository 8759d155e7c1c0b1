"""405, never 501: a method a resource does not take is the client's mistake.

twisted.web answers 501 for any method outside its module-wide list
(GET, HEAD, POST), so a PUT to / would look like a server error.
"""

from __future__ import annotations

from twisted.web.error import UnsupportedMethod
from twisted.web.resource import Resource
from twisted.web.server import Request

from tmpnb.http import replies


class OnlyAllowed(Resource):
    def render(self, request: Request) -> bytes | int:
        try:
            return super().render(request)
        except UnsupportedMethod as e:
            if request.method == b"HEAD" and b"GET" in e.allowedMethods:
                raise  # twisted.web fakes HEAD from GET itself
            request.setHeader(b"Allow", b", ".join(e.allowedMethods))
            return replies.json_reply(request, 405, {"status": "method not allowed"})
