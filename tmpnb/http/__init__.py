"""HTTP building blocks shared by the orchestrator (tmpnb/web), the redirector, share and admin.

Light on purpose: twisted.web and tmpnb.pages only, nothing of the pool, the machine or
Docker, so the redirector can use them without loading any of that.

- `replies`: finishing a request with a page or a JSON document; `departure`, `finish`.
- `headers`: `CorsPolicy`, `ResponseHeaders` (stamped on every answer).
- `methods`: `OnlyAllowed` (405, never 501).
- `clientkey`: who a client is (IPv4 address or IPv6 /64) for every per-client count.
- `keepalive`: `RecentFirstPool`, kept client connections reused newest first.
- `tree`: `Root`, `ApiBranch`, `Preflight`, `NotFoundPage`, `RobotsTxt`.
"""
