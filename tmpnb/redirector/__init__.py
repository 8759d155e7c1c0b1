"""`twistd tmpnb-redirector`: sends each new visitor to one of several tmpnb nodes.

Every host runs its own `twistd tmpnb` node; the redirector in front polls each node's
/api/stats, chooses a healthy node that is not draining and has room, and redirects the
visitor there (GET / and /spawn/…) or forwards the spawn (POST /api/spawn). After the
redirect the visitor talks to that node only. See docs/many-hosts.md.
"""
