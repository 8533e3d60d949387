import pytest

from sciimg.errors import ConfigError
from sciimg.pipeline import load_config

BASE = {"pipeline": "neuro", "input": {"path": "data"}, "output": "out"}


def _errors(raw):
    with pytest.raises(ConfigError) as info:
        load_config(raw)
    return str(info.value)


def test_defaults():
    cfg = load_config(BASE)
    plan = {s.name: s.params for s in cfg.plan()}
    assert list(plan) == ["mask", "denoise", "dti"]
    assert plan["mask"] == {
        "b0_threshold": 10.0,
        "median_radius": 4,
        "numpass": 2,
        "dilate": 1,
        "finalize_mask": False,
        "implementation": "fast",
    }
    assert plan["denoise"]["method"] == "classic" and plan["denoise"]["rician"]
    assert plan["dti"] == {"fit_method": "WLS", "implementation": "fast"}
    assert cfg.cluster.kind == "local" and cfg.cluster.threads_per_worker == 1
    assert "fa" in cfg.outputs() and "denoised" in cfg.outputs()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"outptu": "x"}, "outptu: unknown key"),
        ({"pipeline": "astro-x"}, "pipeline: Input should be 'neuro'"),
        (
            {"steps": {"denoise": {"method": "fast"}}},
            "steps.denoise.method: Input should be 'classic' or 'blockwise' "
            "(got 'fast')",
        ),
        ({"steps": {"mask": {"median_radius": 0}}}, "steps.mask.median_radius"),
        (
            {"steps": {"denoise": {"implementation": "gpu"}}},
            "steps.denoise.implementation: Input should be 'fast' or 'reference' "
            "(got 'gpu')",
        ),
        ({"steps": {"mask": {"radius": 3}}}, "steps.mask.radius: unknown key"),
        ({"steps": {"segment": {}}}, "steps.segment: unknown step"),
        ({"steps": {"dti": {}}}, "steps.dti: needs 'denoised'"),
        (
            {"steps": {"x": {"function": "no_such_module:f"}}},
            "steps.x: cannot import module 'no_such_module'",
        ),
        (
            {"steps": {"x": {"function": "tests.pipeline.udfs:missing"}}},
            "has no 'missing'",
        ),
        (
            {
                "steps": {
                    "mask": {},
                    "wm": {"function": "tests.pipeline.udfs:white_matter"},
                }
            },
            "steps.wm: needs 'fa'",
        ),
        (
            {
                "steps": {
                    "mask": {},
                    "w": {
                        "function": "tests.pipeline.udfs:two_maps",
                        "params": {"sclae": 1},
                    },
                }
            },
            "takes no parameter 'sclae'",
        ),
        ({"export": ["fa", "t1"]}, "export: 't1' is not a result"),
        ({"cluster": {"n_workers": 0}}, "cluster.n_workers"),
        ({"chunk_memory": "lots"}, "chunk_memory"),
    ],
)
def test_errors_name_the_key(change, expected):
    msg = _errors({**BASE, **change})
    assert expected in msg, msg


def test_missing_keys_listed():
    msg = _errors({"pipeline": "neuro"})
    assert "input: required key is missing" in msg
    assert "output: required key is missing" in msg


def test_yaml_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("pipeline: neuro\ninput: {path: [a, b}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid YAML .*line 2"):
        load_config(bad)
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.yaml")


def test_inputs_remap_and_user_steps():
    cfg = load_config(
        {
            **BASE,
            "steps": {
                "mask": {},
                "dti": {"inputs": {"denoised": "dwi"}},
                "wm": {
                    "function": "tests.pipeline.udfs:white_matter",
                    "params": {"threshold": 0.4},
                },
            },
            "export": ["wm"],
        }
    )
    assert [s.name for s in cfg.plan()] == ["mask", "dti", "wm"]
    assert cfg.plan()[2].params == {"threshold": 0.4}


def test_steps_run_in_the_order_of_their_data():
    """Written in any order, the steps are planned after what they need; steps
    free of each other keep the built-in order, then go by name."""
    import itertools

    steps = {
        "wm": {"function": "tests.pipeline.udfs:white_matter"},
        "b0maps": {
            "function": "tests.pipeline.udfs:two_maps",
            "outputs": ["scaled", "log_b0"],
        },
        "mask": {},
        "denoise": {},
        "dti": {},
    }
    seen = set()
    for order in itertools.permutations(steps):
        cfg = load_config({**BASE, "steps": {k: steps[k] for k in order}})
        seen.add((tuple(s.name for s in cfg.plan()), cfg.fingerprint()))
    assert len(seen) == 1
    ((names, _),) = seen
    assert names == ("mask", "denoise", "dti", "b0maps", "wm")


def test_a_step_may_take_the_place_of_a_pipeline_input():
    """A step making ``dwi`` takes the subject's; every other step takes its."""
    cfg = load_config(
        {
            **BASE,
            "steps": {
                "dti": {},
                "denoise": {},
                "mask": {},
                "gibbs": {
                    "function": "tests.pipeline.udfs:unring",
                    "outputs": ["dwi"],
                },
            },
        }
    )
    assert [s.name for s in cfg.plan()] == ["gibbs", "mask", "denoise", "dti"]


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        (
            {
                "a": {"function": "tests.pipeline.udfs:needs_b", "outputs": ["x"]},
                "b": {"function": "tests.pipeline.udfs:needs_x", "outputs": ["b"]},
            },
            "steps.a: steps.a needs 'b' from steps.b, steps.b needs 'x' from "
            "steps.a: the steps need each other's results",
        ),
        (
            {
                "mask": {},
                "m2": {
                    "function": "tests.pipeline.udfs:two_maps",
                    "outputs": ["mask", "other"],
                },
            },
            "steps.m2: makes 'mask', which steps.mask makes too",
        ),
        (
            {"wm": {"function": "tests.pipeline.udfs:white_matter"}, "mask": {}},
            "steps.wm: needs 'fa', which is neither configured nor made by any step",
        ),
    ],
)
def test_order_problems_name_the_steps(steps, expected):
    msg = _errors({**BASE, "steps": steps})
    assert expected in msg, msg
    assert len(msg.splitlines()) == 1, msg


def test_fingerprint_tracks_science_only():
    a = load_config(BASE)
    b = load_config({**BASE, "output": "elsewhere", "cluster": {"n_workers": 3}})
    c = load_config(
        {**BASE, "steps": {"mask": {}, "denoise": {"method": "blockwise"}, "dti": {}}}
    )
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_templates_are_valid():
    from pathlib import Path

    root = Path(__file__).parents[2] / "pipelines" / "neuro"
    for path in sorted(root.glob("*.yaml")):
        assert load_config(path).plan()
