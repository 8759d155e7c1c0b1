"""Notebook images built from a Binder-style repository (repo2docker's files), on tmpnb's own
notebook image and without any registry: `tmpnb image build --from` and `tmpnb run --from`.

One job per module:
- `source`: a folder or a git URL, onto disk;
- `binderfiles`: which Binder files the repository has, and the one error for those tmpnb cannot honour;
- `requirements`: the repository's requirements.txt next to the server's pinned packages;
- `recipe`: the build context and its Dockerfile;
- `naming`: the content hash and the image name;
- `builder`: the build through docker-py, skipped when the image of that hash exists.

Everything here blocks (git, docker-py): it runs before the service starts, never on the reactor.
"""
