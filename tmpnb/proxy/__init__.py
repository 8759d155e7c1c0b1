"""tmpnb's embedded reverse proxy.

`routes.RouteTable` (the route table), `server.ReverseProxyFactory` (the public listener:
forwarding, WebSocket splicing, central static files), `api.ProxyAPIResource` (the REST
API configurable-http-proxy speaks) and `tap` (`twistd tmpnb-proxy`).
"""
