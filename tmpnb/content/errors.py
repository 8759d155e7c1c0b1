"""The one kind of error a content build reports."""

from __future__ import annotations

from tmpnb.image.build import BuildError


class ContentError(BuildError):
    """The repository cannot be built as asked; the message says why, for the teacher."""
