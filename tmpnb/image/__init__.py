"""tmpnb's notebook image: its recipe (Dockerfile, pinned requirements, welcome notebook),
how it is built without a registry, and how its static files are extracted for the proxy.

`python -m tmpnb.image build` builds it; `python -m tmpnb.image extract-static DEST` copies
its static files out. From Python: `tmpnb.image.build.ensure_image(client)`.
"""
