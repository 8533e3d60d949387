"""Planning a config's steps: each entry resolved to a step with validated
parameters, put in the order of their data, with one line per problem."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from sciimg.errors import ConfigError
from sciimg.pipeline.config_errors import did_you_mean, pydantic_lines
from sciimg.pipeline.registry import get_pipeline
from sciimg.pipeline.step_order import order_steps
from sciimg.pipeline.steps import (
    Step,
    builtin_steps,
    load_function,
    resolve_arguments,
)

__all__ = ["NAME_RULE", "PlannedStep", "is_simple_name", "plan_steps"]


#: Names of steps and results become file and folder names under ``output``.
NAME_RULE = (
    "must be a simple name (a letter, then letters, digits, '_' or '-'), since "
    "it names files in the output folder"
)


def is_simple_name(name: object) -> bool:
    """Whether ``name`` can name a file in the output folder and nothing else.

    Examples
    --------
    >>> is_simple_name("fa"), is_simple_name("/tmp/x"), is_simple_name("../up")
    (True, False, False)
    """
    import re

    return isinstance(name, str) and re.fullmatch(r"[A-Za-z][\w-]*", name) is not None


@dataclass(frozen=True)
class PlannedStep:
    """A step with its validated parameters, ready to run."""

    name: str
    step: Step
    params: dict[str, Any]
    inputs: dict[str, str]


def _plan_fixed(cfg) -> tuple[list[PlannedStep], list[str]]:
    """Steps of a pipeline whose order is fixed (astro): parameters only."""
    builtins = builtin_steps(cfg.pipeline)
    entries = dict(cfg.steps or {})
    errors = [
        f"steps.{name}: unknown step{did_you_mean(name, builtins)} (the "
        f"{cfg.pipeline} pipeline's steps are {', '.join(builtins)}, always all "
        "of them, in that order)"
        for name in entries
        if name not in builtins
    ]
    plan = []
    for name, step in builtins.items():
        try:
            params = step.params(**(entries.get(name) or {})).model_dump()
        except ValidationError as exc:
            errors.extend(pydantic_lines(exc, ("steps", name), step.params))
            continue
        plan.append(PlannedStep(name, step, params, {}))
    return plan, errors


def _rejected_outputs(name: str, entry: dict, builtins: dict[str, Step]) -> set:
    """What a step rejected by validation would have made: later steps and
    exports may still name it, and must not be reported as errors too."""
    if "function" in entry:
        outputs = entry.get("outputs")
        return set(outputs) if isinstance(outputs, list) else {name}
    import difflib

    meant = difflib.get_close_matches(name, list(builtins), n=1)
    return set(builtins[meant[0]].outputs) if meant else {name}


def plan_steps(cfg) -> tuple[list[PlannedStep], list[str], set]:
    """The planned steps, one line per problem, and the outputs of rejected steps.

    Steps run in the order of what they need and make, whatever their order in
    the config: a step runs after the steps that make its inputs; steps that do
    not depend on each other keep the built-in steps' order, then go by name.
    """
    pipeline = get_pipeline(cfg.pipeline)
    if pipeline.fixed_steps:
        return (*_plan_fixed(cfg), set())
    builtins = builtin_steps(cfg.pipeline)
    default = builtins if pipeline.default_steps is None else pipeline.default_steps
    entries = cfg.steps if cfg.steps is not None else dict.fromkeys(default)
    candidates: list[PlannedStep] = []
    errors, rejected = [], set()
    for name, raw in entries.items():
        entry = dict(raw or {})
        where = f"steps.{name}"
        inputs = entry.pop("inputs", None) or {}
        problems: list[str] = []
        if not is_simple_name(name):
            problems.append(f"{where}: a step's name {NAME_RULE}")
        elif not isinstance(inputs, dict):
            problems.append(f"{where}.inputs: expected a mapping of parameter: result")
        else:
            try:
                step, params = _step_of(name, entry, builtins, problems)
                if step is not None:
                    candidates.append(PlannedStep(name, step, params, dict(inputs)))
            except ConfigError as exc:
                problems.append(f"{where}: {exc}")
        if problems:
            errors += problems
            rejected |= _rejected_outputs(name, entry, builtins)
    order = {name: i for i, name in enumerate(builtins)}
    ordered, order_errors, dropped = order_steps(
        candidates,
        pipeline.inputs,
        key=lambda name: (order.get(name, len(order)), name),
    )
    errors += order_errors
    rejected |= dropped
    available = set(pipeline.inputs)
    plan = []
    for planned in ordered:
        try:
            resolve_arguments(
                planned.step, available | rejected, planned.params, planned.inputs
            )
        except ConfigError as exc:
            errors.append(f"steps.{planned.name}: {exc}")
            rejected |= set(planned.step.outputs)
            continue
        plan.append(planned)
        available |= set(planned.step.outputs)
    return plan, errors, rejected - available


def _step_of(
    name: str, entry: dict, builtins: dict[str, Step], problems: list[str]
) -> tuple[Step | None, dict[str, Any]]:
    """The step a config entry names and its validated parameters; a built-in
    step's invalid parameters are added to ``problems`` (and no step returned)."""
    if "function" in entry:
        extra = set(entry) - {"function", "params", "outputs"}
        if extra:
            raise ConfigError(
                f"unknown key {sorted(extra)[0]!r} (a step of your own takes "
                "function, params, inputs, outputs)"
            )
        func = load_function(str(entry["function"]))
        outputs = tuple(entry.get("outputs") or (name,))
        for output in outputs:
            if not is_simple_name(output):
                raise ConfigError(f"outputs: {NAME_RULE}, not {output!r}")
        return Step(name, func, outputs), dict(entry.get("params") or {})
    if name not in builtins:
        raise ConfigError(
            f"unknown step{did_you_mean(name, builtins)} (built-in steps: "
            f"{', '.join(builtins)}; a step of your own needs "
            "'function: module:function')"
        )
    step = builtins[name]
    try:
        return step, step.params(**entry).model_dump() if step.params else {}
    except ValidationError as exc:
        problems.extend(pydantic_lines(exc, ("steps", name), step.params))
        return None, {}
