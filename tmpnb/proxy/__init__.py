"""tmpnb's embedded reverse proxy.

`routes.RouteTable` (the route table), `public.public_proxy` (the public listener, built from
`settings.ProxySettings`: forwarding, WebSocket splicing, central static files),
`api.ProxyAPIResource` (the REST API configurable-http-proxy speaks) and `tap`
(`twistd tmpnb-proxy`). docs/contracts.md lists every module's one job.
"""
