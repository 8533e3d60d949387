"""Config errors as users read them: one line per problem, naming the key, with
a suggestion when a key is misspelt."""

from __future__ import annotations

from pydantic import BaseModel, ValidationError

from sciimg.pipeline.cluster_config import KeyProblems

__all__ = ["did_you_mean", "pydantic_lines"]


def _loc(loc: tuple) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def did_you_mean(word: str, choices) -> str:
    """``"; did you mean 'x'?"`` when a choice is close to ``word``, else ``""``.

    Examples
    --------
    >>> did_you_mean("median_raduis", ["median_radius", "numpass"])
    "; did you mean 'median_radius'?"
    >>> did_you_mean("zzz", ["median_radius"])
    ''
    """
    import difflib

    # Case is the commonest slip ('FA' for 'fa'): compare without it.
    by_lower = {str(c).lower(): str(c) for c in choices}
    close = difflib.get_close_matches(str(word).lower(), list(by_lower), n=1)
    return f"; did you mean {by_lower[close[0]]!r}?" if close else ""


def _model_at(model: type[BaseModel] | None, path: tuple) -> type[BaseModel] | None:
    """The pydantic model that holds the keys at ``path`` inside ``model``."""
    import typing

    for part in path:
        if model is None or not isinstance(part, str) or part not in model.model_fields:
            return None
        annotation = model.model_fields[part].annotation
        candidates = typing.get_args(annotation) or (annotation,)
        model = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)),
            None,
        )
    return model


def pydantic_lines(
    exc: ValidationError, prefix: tuple = (), model: type[BaseModel] | None = None
) -> list[str]:
    lines, meant = [], set()
    for err in exc.errors():
        loc = _loc(prefix + tuple(err["loc"]))
        error = err.get("ctx", {}).get("error")
        if isinstance(error, KeyProblems):
            lines += [f"{loc}.{key}: {msg}" for key, msg in error.problems]
            continue
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            known = _model_at(model, tuple(err["loc"][:-1]))
            hint = did_you_mean(err["loc"][-1], known.model_fields) if known else ""
            msg = f"unknown key{hint}"
            if hint:
                meant.add(_loc((*prefix, *err["loc"][:-1], hint.split("'")[1])))
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif "input" in err and not isinstance(err["input"], dict | list):
            msg = f"{msg} (got {err['input']!r})"
        lines.append(f"{loc}: {msg}")
    # A misspelt required key is one problem, not two: keep the "did you mean".
    return [line for line in lines if line.split(": ")[0] not in meant]
