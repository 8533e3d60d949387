"""The order steps run in: that of what each needs and makes, not the config's.

A step needs the results its function's parameters name (or ``inputs:`` maps
them to) and makes its ``outputs``. It runs after every step that makes a result
it needs, so a config means the same whatever order its steps are written in
(``yaml.safe_dump`` sorts keys, for one). A step may make a result named like
one the pipeline offers (``dwi``, say): every other step that takes the name
then takes the step's result, and the step itself the pipeline's.
"""

from __future__ import annotations

import heapq
import inspect
import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

__all__ = ["order_steps"]


class _Planned(Protocol):
    name: str
    step: Any  # sciimg.pipeline.steps.Step
    params: dict[str, Any]
    inputs: dict[str, str]


def needs(planned: _Planned) -> list[str]:
    """Names of the results ``planned`` takes, in its parameters' order.

    Examples
    --------
    >>> from sciimg.pipeline.steps import Step
    >>> from types import SimpleNamespace as NS
    >>> def fit(denoised, gtab, mask=None, scale=1.0): ...
    >>> needs(NS(name="fit", step=Step("fit", fit, ("fa",)), params={"scale": 2},
    ...          inputs={"denoised": "dwi"}))
    ['dwi', 'gtab', 'mask']
    """
    out = []
    for pname, p in inspect.signature(planned.step.func).parameters.items():
        if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) or pname in planned.params:
            continue
        out.append(planned.inputs.get(pname, pname))
    return out


def order_steps(
    steps: Sequence[_Planned],
    given: Iterable[str],
    *,
    key: Callable[[str], Any] = lambda name: name,
) -> tuple[list[_Planned], list[str], set[str]]:
    """Order ``steps`` so that each comes after the steps making what it needs.

    Parameters
    ----------
    steps : sequence
        Planned steps (``name``, ``step``, ``params``, ``inputs``).
    given : iterable of str
        Results the pipeline offers before any step runs.
    key : callable
        Of a step's name: among steps free to run, the smallest goes first, so
        the order does not depend on the order of ``steps``.

    Returns
    -------
    ordered : list
        The steps that can be ordered.
    errors : list of str
        One line per problem: two steps making one result; steps that need each
        other's results, in a cycle (named with what each needs from the next).
    dropped : set of str
        What the steps left out would have made (later problems with those
        names are not reported again).

    Examples
    --------
    >>> from sciimg.pipeline.steps import Step
    >>> from types import SimpleNamespace as NS
    >>> def fit(denoised): ...
    >>> def denoise(dwi): ...
    >>> plan = [NS(name="dti", step=Step("dti", fit, ("fa",)), params={}, inputs={}),
    ...         NS(name="denoise", step=Step("denoise", denoise, ("denoised",)),
    ...            params={}, inputs={})]
    >>> [s.name for s in order_steps(plan, {"dwi"})[0]]
    ['denoise', 'dti']
    """
    given = set(given)
    errors: list[str] = []
    maker: dict[str, str] = {}
    by_name = {s.name: s for s in steps}
    dropped_steps: set[str] = set()
    for s in sorted(steps, key=lambda s: key(s.name)):
        for result in s.step.outputs:
            other = maker.get(result)
            if other is None:
                maker[result] = s.name
            else:
                errors.append(
                    f"steps.{s.name}: makes {result!r}, which steps.{other} makes "
                    "too (each result is made by one step)"
                )
                dropped_steps.add(s.name)
    after: dict[str, dict[str, str]] = {}  # step -> {step it needs: result}
    for s in steps:
        if s.name in dropped_steps:
            continue
        deps: dict[str, str] = {}
        for result in needs(s):
            src = maker.get(result)
            # Its own result, where the pipeline offers that name too: the
            # pipeline's (a step's own result is otherwise missing, said later).
            if src is not None and src != s.name and src not in dropped_steps:
                deps.setdefault(src, result)
        after[s.name] = deps
    waiting = {name: set(deps) for name, deps in after.items()}
    ready = [(key(n), n) for n, deps in waiting.items() if not deps]
    heapq.heapify(ready)
    ordered = []
    while ready:
        _, name = heapq.heappop(ready)
        ordered.append(by_name[name])
        del waiting[name]
        for other, deps in waiting.items():
            if name in deps:
                deps.discard(name)
                if not deps:
                    heapq.heappush(ready, (key(other), other))
    if waiting:
        errors.append(_cycle(waiting, after, key))
        dropped_steps |= set(waiting)
    dropped = {r for n in dropped_steps for r in by_name[n].step.outputs}
    return ordered, errors, dropped - {r for s in ordered for r in s.step.outputs}


def _cycle(waiting: dict[str, set[str]], after: dict[str, dict[str, str]], key) -> str:
    """One line naming the steps of one cycle among ``waiting``, each with what
    it needs from the next."""
    name = min(waiting, key=key)
    path: list[str] = []
    while name not in path:
        path.append(name)
        name = min((d for d in waiting[name] if d in waiting), key=key)
    loop = [*path[path.index(name) :], name]
    links = ", ".join(
        f"steps.{a} needs {after[a][b]!r} from steps.{b}"
        for a, b in itertools.pairwise(loop)
    )
    return f"steps.{loop[0]}: {links}: the steps need each other's results"
