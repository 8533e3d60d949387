"""The pipeline configuration: one pydantic schema, the single source of keys,
defaults and error messages for YAML files, the CLI and Python callers alike."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from sciimg.device import Device, check_device
from sciimg.errors import ConfigError
from sciimg.pipeline.cluster_config import BATCH_KINDS, ClusterConfig, check_size
from sciimg.pipeline.config_errors import did_you_mean, pydantic_lines
from sciimg.pipeline.plan import NAME_RULE, PlannedStep, is_simple_name, plan_steps
from sciimg.pipeline.strict import StrictModel

__all__ = [
    "ClusterConfig",
    "InputConfig",
    "PipelineConfig",
    "PlannedStep",
    "load_config",
]


class PlanesConfig(StrictModel):
    """``input.planes`` (astro): which FITS extension holds each plane."""

    image: str | int = Field("IMAGE", description="EXTNAME or HDU index")
    mask: str | int | None = Field("MASK", description="null: no mask plane")
    variance: str | int | None = Field(
        "VARIANCE", description="null: made from gain and read noise"
    )


class InputConfig(StrictModel):
    """``input``: where the subjects (neuro) or exposures (astro) are."""

    path: str | list[str] = Field(
        description="neuro: BIDS or HCP folder, one file, or a list of files; "
        "astro: a folder searched for FITS files, or a list of files"
    )
    planes: PlanesConfig = Field(default_factory=PlanesConfig)

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str | list[str]) -> str | list[str]:
        # Workers read the files, and a worker's current folder is not the
        # driver's (on another machine, or started elsewhere): relative paths
        # are taken from where the config is loaded.
        if isinstance(value, list):
            return [os.path.abspath(v) for v in value]
        return os.path.abspath(value)

    where: str | None = Field(
        None,
        description="select items by their metadata before any compute, e.g. "
        "\"exptime > 60 and filter == 'g'\" (the columns of manifest.parquet)",
    )

    @field_validator("where")
    @classmethod
    def _expression(cls, value: str | None) -> str | None:
        from pydantic_core import PydanticCustomError

        from sciimg.pipeline.where import Where

        if value is not None:
            try:
                Where(value)
            except ConfigError as exc:
                problem = str(exc).removeprefix("input.where: ")
                raise PydanticCustomError("where_error", problem) from None
        return value

    mask_bits: dict[str, int] | None = Field(
        None,
        description="astro: bit index per flag name (BAD, SAT, CR, ...) when the "
        "mask header has no MP_* keywords",
    )


class PipelineConfig(StrictModel):
    """A whole run: pipeline, input, output, steps, export, cluster.

    Examples
    --------
    >>> cfg = load_config({"pipeline": "neuro", "input": {"path": "data"},
    ...                    "output": "out"})
    >>> [s.name for s in cfg.plan()]
    ['mask', 'denoise', 'dti']
    """

    pipeline: str = Field(description="a registered pipeline: neuro, astro, ...")
    input: InputConfig
    output: Path
    steps: dict[str, dict[str, Any] | None] | None = None
    export: list[str] = Field(default_factory=list)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    chunk_memory: str | None = Field(
        None, description="bytes per chunk, e.g. 64MiB; default Dask's array.chunk-size"
    )
    device: Device = Field(
        "cpu", description="cpu, or gpu: chunks computed as CuPy arrays on GPUs"
    )

    _plan: list[PlannedStep] = PrivateAttr(default_factory=list)
    _origin: str = PrivateAttr("config")  # the YAML file, for messages

    @field_validator("pipeline")
    @classmethod
    def _registered(cls, value: str) -> str:
        from pydantic_core import PydanticCustomError

        from sciimg.pipeline.registry import get_pipeline, pipeline_names

        if value not in pipeline_names():
            names = [repr(n) for n in pipeline_names()]
            expected = " or ".join(
                [", ".join(names[:-1]), names[-1]] if len(names) > 1 else names
            )
            raise PydanticCustomError(
                "literal_error", "Input should be {expected}", {"expected": expected}
            )
        try:
            get_pipeline(value)
        except ConfigError as exc:
            raise PydanticCustomError("pipeline_error", str(exc)) from None
        return value

    @field_validator("output")
    @classmethod
    def _absolute_output(cls, value: Path) -> Path:
        # Written by the workers, as input.path is read; '..' resolved here, so
        # that messages and checks see the folder that is really written.
        return Path(os.path.abspath(value))

    @model_validator(mode="after")
    def _gpu_jobs(self) -> PipelineConfig:
        # A batch job of a GPU run asks for its GPU unless the section says.
        batch = self.cluster.kind in BATCH_KINDS
        if self.device == "gpu" and batch and self.cluster.gpus is None:
            self.cluster = self.cluster.model_copy(update={"gpus": 1})
        return self

    @field_validator("chunk_memory")
    @classmethod
    def _bytes(cls, value: str | None) -> str | None:
        return check_size(value, "64MiB")

    def plan(self) -> list[PlannedStep]:
        """The steps in order, with parameters validated and defaults filled."""
        return list(self._plan)

    def outputs(self) -> list[str]:
        """Every result the steps produce, in order."""
        return [o for s in self._plan for o in s.step.outputs]

    def check_paths(self) -> None:
        """Check what the schema cannot: that ``input.path`` exists, that
        ``output`` is (or can be) a folder, and that ``device: gpu`` has a GPU
        when the workers are started on this machine.

        Raises
        ------
        ConfigError
            One line per problem, naming the key.

        Examples
        --------
        >>> cfg = load_config({"pipeline": "neuro", "input": {"path": "no/such"},
        ...                    "output": "out"})
        >>> cfg.check_paths()
        Traceback (most recent call last):
        ...
        sciimg.errors.ConfigError: config: input.path: .../no/such does not exist
        """
        problems = []
        # A list names items one by one: a missing one fails alone, at run time.
        if isinstance(self.input.path, str) and not Path(self.input.path).exists():
            problems.append(f"input.path: {self.input.path} does not exist")
        for folder in (self.output, *self.output.parents):
            if folder.exists():
                if not folder.is_dir():
                    problems.append(f"output: {folder} is a file, not a folder")
                break
        # Workers started here compute here; others are asked when they start.
        if self.device == "gpu" and self.cluster.kind == "local":
            try:
                check_device(self.device)
            except ConfigError as exc:
                problems.append(str(exc))
        if problems:
            raise ConfigError("\n".join(f"{self._origin}: {p}" for p in problems))

    def fingerprint(self) -> str:
        """Hash of what determines the results (not where they go or what runs them)."""
        science = {
            "pipeline": self.pipeline,
            "steps": [
                (
                    s.name,
                    s.params,
                    s.inputs,
                    f"{s.step.func.__module__}:{s.step.func.__qualname__}",
                )
                for s in self._plan
            ],
            "chunk_memory": self.chunk_memory,
            # GPU results equal the CPU's within tolerances, not to the bit.
            **({"device": self.device} if self.device != "cpu" else {}),
        }
        blob = json.dumps(science, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def load_config(
    source: str | Path | Mapping[str, Any],
    overrides: Mapping[str, Any] | None = None,
    replace: Mapping[str, Any] | None = None,
) -> PipelineConfig:
    """Read and validate a pipeline configuration.

    Parameters
    ----------
    source : path or mapping
        A YAML file, or the same content as a dict.
    overrides : mapping, optional
        Top-level sections merged over the file's (e.g. ``{"cluster": {...}}``).
    replace : mapping, optional
        Top-level sections that replace the file's whole, e.g. a cluster
        section for a scheduler that exists already, whose workers need no
        sizing.

    Returns
    -------
    PipelineConfig

    Raises
    ------
    ConfigError
        One line per problem, each naming the key and what was expected.

    Examples
    --------
    >>> load_config({"pipeline": "neuro", "input": {"path": "d"}, "output": "o",
    ...              "steps": {"denoise": {"method": "fast"}}})
    Traceback (most recent call last):
    ...
    sciimg.errors.ConfigError: config: steps.denoise.method: Input should be ...
    """
    origin = "config"
    if isinstance(source, Mapping):
        raw = dict(source)
    else:
        origin = str(source)
        try:
            raw = yaml.safe_load(Path(source).read_text())
        except FileNotFoundError:
            raise ConfigError(f"{origin}: no such file") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or exc
            raise ConfigError(f"{origin}: not valid YAML ({problem}{where})") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{origin}: expected a mapping of keys at the top level")
    for key, value in (overrides or {}).items():
        if isinstance(value, Mapping) and isinstance(raw.get(key), Mapping):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    raw.update(replace or {})
    try:
        cfg = PipelineConfig(**raw)
    except ValidationError as exc:
        lines = pydantic_lines(exc, model=PipelineConfig)
        raise ConfigError("\n".join(f"{origin}: {line}" for line in lines)) from None
    plan, errors, rejected = plan_steps(cfg)
    outputs = {o for s in plan for o in s.step.outputs}
    errors += [
        f"export: {name!r} is not a result of the steps"
        f"{did_you_mean(name, outputs)} (results: {', '.join(sorted(outputs))})"
        for name in cfg.export
        if name not in outputs | rejected and is_simple_name(name)
    ]
    errors += [
        f"export: {NAME_RULE}, not {name!r}"
        for name in cfg.export
        if not is_simple_name(name)
    ]
    if errors:
        raise ConfigError("\n".join(f"{origin}: {line}" for line in errors))
    cfg._plan = plan
    cfg._origin = origin
    return cfg
