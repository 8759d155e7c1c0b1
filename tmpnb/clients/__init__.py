"""Who is asking for a container, and how much of the node they may have.

One job per module:

- address.py: the client address a request counts against (the socket's peer, or
  X-Forwarded-For behind a trusted proxy);
- fetchmeta.py: whether a request is a navigation or an API call (`Sec-Fetch-*`), the only
  requests a container is handed out for;
- bucket.py: a token bucket (how fast one address may spawn);
- shares.py: the accounts: what each address holds (containers handed out and alive,
  tickets in the waiting line) against its share of the capacity and its spawn rate;
- returning.py: the host-locked cookie that sends a visitor who reloads `/` back to the
  server they already have;
- gate.py: the four together, as the web's hand-out (tmpnb/web/handout.py) calls them;
- answers.py: the 429/403 page and JSON a refused client gets.
"""

from tmpnb.clients.gate import ClientGate, Refusal, make_gate
from tmpnb.clients.shares import SharePolicy

__all__ = ["ClientGate", "Refusal", "SharePolicy", "make_gate"]
