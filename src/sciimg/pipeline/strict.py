"""The base of every config section and step parameter schema."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["StrictModel"]


class StrictModel(BaseModel):
    """A pydantic model that rejects keys it does not define.

    A misspelt key in a YAML config is then an error naming the key (with a
    suggestion), not a setting silently ignored. Parameter schemas of steps and
    pipelines of one's own derive from it too.

    Examples
    --------
    >>> from pydantic import ValidationError
    >>> class Params(StrictModel):
    ...     size: int = 3
    >>> try:
    ...     Params(sise=5)
    ... except ValidationError as exc:
    ...     print(exc.errors()[0]["type"], exc.errors()[0]["loc"])
    extra_forbidden ('sise',)
    """

    model_config = ConfigDict(extra="forbid")
