"""The base of every scenario model: immutable, unknown keys rejected.

``frozen=True`` lets the layers below share spec objects without copying (nothing can change a scenario once it
is validated); ``extra="forbid"`` turns a misspelt key into an error naming it rather than a silently ignored
setting. Every model of :mod:`agentsim.spec` derives from :class:`Strict`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """Base of every spec model: immutable, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")
