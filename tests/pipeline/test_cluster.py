"""The ``cluster:`` section: validation, dask-jobqueue's keys and defaults, the
job scripts, and clients for local and existing clusters."""

import re

import dask
import pytest
import yaml

from sciimg.errors import ConfigError
from sciimg.pipeline import load_config
from sciimg.pipeline._health import Limits
from sciimg.pipeline.cluster import connect
from sciimg.pipeline.cluster_config import ClusterConfig, parse_duration
from sciimg.pipeline.jobscript import driver_script, worker_script
from tests.helpers import dask_config_dir, run_sciimg

BASE = {"pipeline": "neuro", "input": {"path": "data"}, "output": "out"}
#: The sizing of pipelines/neuro/demo.yaml.
DEMO = {"n_workers": 2, "threads_per_worker": 1, "memory_limit": "4GB"}


def _errors(cluster):
    with pytest.raises(ConfigError) as info:
        load_config({**BASE, "cluster": cluster})
    return str(info.value).splitlines()


def test_every_problem_is_named_by_its_key():
    lines = _errors({"kind": "local", "queue": "short", "walltime": "1:00:00"})
    assert lines == [
        "config: cluster.walltime: applies to kinds slurm, pbs, sge, lsf, not 'local'",
        "config: cluster.queue: applies to kinds slurm, pbs, sge, lsf, not 'local'",
    ]
    assert _errors({"kind": "scheduler"}) == [
        "config: cluster.address: required for kind 'scheduler'"
    ]
    assert _errors({"kind": "kubernetes"})[0].startswith(
        "config: cluster.kind: Input should be 'local', 'scheduler', 'slurm'"
    )
    assert _errors({"kind": "slurm", "processes": True, **_SIZE}) == [
        "config: cluster.processes: expected worker processes per job"
    ]
    assert _errors({"kind": "local", "processes": 4}) == [
        "config: cluster.processes: expected true (processes) or false"
    ]
    assert _errors({"kind": "slurm", "min_jobs": 3, "max_jobs": 2, **_SIZE}) == [
        "config: cluster.min_jobs: larger than max_jobs"
    ]
    assert (
        "give one or the other"
        in _errors({"kind": "pbs", "n_workers": 2, "max_jobs": 4, **_SIZE})[0]
    )
    assert _errors({"kind": "pbs", "memory": "lots", "cores": 2}) == [
        "config: cluster.memory: Value error, expected a size such as '4GB', "
        "got 'lots' (got 'lots')"
    ]


_SIZE = {"cores": 2, "memory": "4GB"}


def test_batch_kind_needs_memory_from_somewhere():
    with dask.config.set({"jobqueue.slurm.memory": None}):
        assert _errors({"kind": "slurm"}) == [
            "config: cluster.memory: needed for kind 'slurm': set cluster.memory, "
            "or jobqueue.slurm.memory in dask's configuration"
        ]
    with dask.config.set({"jobqueue.slurm.memory": "8GB", "jobqueue.slurm.cores": 4}):
        kwargs = load_config({**BASE, "cluster": {"kind": "slurm"}}).cluster
        # Left to dask-jobqueue, which reads its own configuration.
        assert kwargs.jobqueue_kwargs() == {"memory": "8GB", "processes": 4}


def test_local_sizing_carries_to_batch_jobs():
    """A local config runs on a batch system with only ``kind`` changed."""
    cfg = ClusterConfig(kind="slurm", **DEMO)
    assert cfg.jobqueue_kwargs() == {"cores": 1, "memory": "4GB", "processes": 1}
    assert cfg.batch_jobs() == 2
    two = ClusterConfig(kind="pbs", processes=2, **DEMO)
    assert two.jobqueue_kwargs() == {"cores": 2, "memory": "8GB", "processes": 2}
    assert two.batch_jobs() == 1
    # Keys of the batch system win over the sizing.
    own = ClusterConfig(kind="slurm", cores=8, memory="32GB", processes=4, **DEMO)
    assert own.jobqueue_kwargs() == {"cores": 8, "memory": "32GB", "processes": 4}


def test_account_is_a_project_on_sge_and_lsf():
    for kind, key in [
        ("slurm", "account"),
        ("pbs", "account"),
        ("sge", "project"),
        ("lsf", "project"),
    ]:
        cfg = ClusterConfig(kind=kind, account="astro42", **_SIZE)
        assert cfg.jobqueue_kwargs()[key] == "astro42"


def _directives(script, prefix):
    return [
        line[len(prefix) :].strip()
        for line in script.splitlines()
        if line.startswith(prefix)
    ]


def test_slurm_scripts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # dask-jobqueue creates the log folder
    cfg = ClusterConfig(
        kind="slurm",
        cores=4,
        memory="16GB",
        processes=2,
        walltime="02:00:00",
        queue="short",
        account="neuro",
        job_extra_directives=["--qos=normal"],
        job_script_prologue=["module load python/3.11"],
        log_directory="logs",
        local_directory="$TMPDIR",
    )
    worker = worker_script(cfg)
    assert worker.startswith("#!/usr/bin/env bash\n")
    assert _directives(worker, "#SBATCH") == [
        "-J dask-worker",
        "-e logs/dask-worker-%J.err",
        "-o logs/dask-worker-%J.out",
        "-p short",
        "-A neuro",
        "-n 1",
        "--cpus-per-task=4",
        "--mem=15G",
        "-t 02:00:00",
        "--qos=normal",
    ]
    assert "module load python/3.11" in worker
    command = worker.strip().splitlines()[-1]
    assert "distributed.cli.dask_worker tcp://SCHEDULER-ADDRESS:8786" in command
    assert "--nworkers 2" in command and "--nthreads 2" in command
    assert "--local-directory $TMPDIR" in command

    driver = driver_script(
        cfg, "neuro.yaml", run_args=["--workers", "4"], workdir="/project"
    )
    assert _directives(driver, "#SBATCH") == [
        "-J sciimg-run",
        "-p short",
        "-A neuro",
        "-n 1",
        "--cpus-per-task=1",
        "--mem=4G",
        "-t 02:00:00",
        "--qos=normal",
    ]
    body = driver.splitlines()
    assert "module load python/3.11" in body
    assert "cd /project" in body
    assert re.fullmatch(
        r"exec \S+ -m sciimg run /\S*neuro\.yaml --workers 4 --no-progress", body[-1]
    )


def test_pbs_sge_lsf_scripts():
    cfg = dict(cores=8, memory="32GB", walltime="04:00:00", queue="workq")
    pbs = worker_script(ClusterConfig(kind="pbs", account="proj", **cfg))
    assert _directives(pbs, "#PBS") == [
        "-N dask-worker",
        "-q workq",
        "-A proj",
        "-l select=1:ncpus=8:mem=30GB",
        "-l walltime=04:00:00",
    ]
    driver = driver_script(
        ClusterConfig(kind="pbs", **cfg),
        "astro.yaml",
        memory="2GB",
        walltime="12:00:00",
    )
    assert _directives(driver, "#PBS") == [
        "-N sciimg-run",
        "-q workq",
        "-l select=1:ncpus=1:mem=1908MB",
        "-l walltime=12:00:00",
    ]
    sge = worker_script(ClusterConfig(kind="sge", **cfg))
    assert "-q workq" in _directives(sge, "#$")
    lsf = worker_script(ClusterConfig(kind="lsf", **{**cfg, "walltime": "04:00"}))
    assert "-q workq" in _directives(lsf, "#BSUB")
    assert "-W 04:00" in _directives(lsf, "#BSUB")
    with pytest.raises(ValueError, match="LSF takes"):
        ClusterConfig(kind="lsf", **cfg)


def test_jobscript_needs_a_batch_kind():
    with pytest.raises(ConfigError, match="job scripts are for kinds slurm"):
        worker_script(ClusterConfig())


def test_jobscript_command_reads_dask_jobqueue_config(tmp_path):
    """HPC defaults come from dask's own config files, as dask-jobqueue's do."""
    env = dask_config_dir(
        tmp_path,
        {
            "slurm": {
                "cores": 16,
                "memory": "64GB",
                "processes": 4,
                "queue": "compute",
                "walltime": "08:00:00",
            }
        },
    )
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({**BASE, "cluster": {"kind": "slurm"}}))
    worker = run_sciimg("jobscript", cfg, "--part", "worker", env=env)
    assert worker.returncode == 0, worker.stderr
    assert _directives(worker.stdout, "#SBATCH")[1:] == [
        "-p compute",
        "-n 1",
        "--cpus-per-task=16",
        "--mem=60G",
        "-t 08:00:00",
    ]
    assert "--nthreads 4" in worker.stdout and "--nworkers 4" in worker.stdout
    # The command line overrides the file: two workers of 4GB, one per job.
    driver = run_sciimg(
        "jobscript",
        cfg,
        "--part",
        "driver",
        "--workers",
        "2",
        "--memory-limit",
        "4GB",
        env=env,
        cwd=tmp_path,
    )
    assert driver.returncode == 0, driver.stderr
    assert driver.stdout.rstrip().endswith(
        f"run {cfg} --workers 2 --memory-limit 4GB --no-progress"
    )
    local = run_sciimg(
        "jobscript", tmp_path / "run.yaml", "--cluster", "local", env=env
    )
    assert local.returncode == 2
    assert "job scripts are for kinds slurm, pbs, sge, lsf" in local.stderr


def test_cli_cluster_options_are_checked(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump(BASE))
    both = run_sciimg("run", cfg, "--scheduler", "tcp://127.0.0.1:1", "--workers", "2")
    assert both.returncode == 2
    assert "--scheduler reaches a cluster that exists already" in both.stderr
    bad = run_sciimg("run", cfg, "--cluster", "condor")
    assert bad.returncode == 2
    assert "cluster.kind: Input should be 'local', 'scheduler'" in bad.stderr


def test_connect_local_and_existing(client):
    local = {"n_workers": 1, "processes": False, "dashboard_address": ":0"}
    with connect(local) as c:
        assert len(c.scheduler_info()["workers"]) == 1
        assert c.cluster is not None
    with connect({"kind": "scheduler", "address": client.scheduler.address}) as c:
        assert c.cluster is None
        assert c.submit(sum, [1, 2]).result() == 3
    # The existing cluster outlives the connection.
    assert client.submit(sum, [3, 4]).result() == 7
    with pytest.raises(ConfigError, match=r"cluster\.n_workers"):
        connect({"n_workers": 0}).__enter__()


def test_durations_take_minutes_written_min():
    cluster = load_config({**BASE, "cluster": {"startup_timeout": "30min"}}).cluster
    assert parse_duration(cluster.startup_timeout) == 1800
    assert _errors({"lost_timeout": "soon"}) == [
        "config: cluster.lost_timeout: Value error, expected a duration such as "
        "'30min', got 'soon' (got 'soon')"
    ]
    assert "expected a positive duration" in _errors({"quiet_warning": "0s"})[0]


def test_how_long_a_run_waits_on_its_cluster():
    local = Limits.for_cluster(ClusterConfig())
    assert (local.lost, local.quiet, local.pause) == (60, 120, 120)
    # A scheduler sciimg starts gives up on a task at the second worker death;
    # one of the user's has its own setting.
    assert local.allowed_failures == 1
    existing = ClusterConfig(kind="scheduler", address="tcp://h:1", lost_timeout="5s")
    assert Limits.for_cluster(existing).lost == 5
    assert Limits.for_cluster(existing).allowed_failures == 3
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        assert Limits.for_cluster(ClusterConfig()).allowed_failures == 0
    # A batch queue may hold replacement jobs as long as it held the first ones.
    slurm = {"kind": "slurm", **_SIZE}
    assert Limits.for_cluster(ClusterConfig(**slurm)).lost is None
    waits = ClusterConfig(**slurm, startup_timeout="30min", quiet_warning=None)
    assert (Limits.for_cluster(waits).lost, Limits.for_cluster(waits).quiet) == (
        1800,
        None,
    )


def _profiling(dask_worker) -> bool:
    return "profile" in dask_worker.periodic_callbacks


def test_workers_sciimg_starts_run_without_the_profiler():
    """Dask's statistical profiler doubled the astro tasks' time: local worker
    processes start without it, unless ``cluster.profile`` asks for it."""
    from sciimg.pipeline import open_client

    cfg = {"n_workers": 1, "threads_per_worker": 1, "dashboard_address": None}
    client = open_client(cfg)
    try:
        assert set(client.run(_profiling).values()) == {False}
    finally:
        client.shutdown()
    client = open_client({**cfg, "processes": False, "profile": True})
    try:
        assert set(client.run(_profiling).values()) == {True}
    finally:
        client.shutdown()


def test_sciimg_pipeline_imports_in_a_worker_thread():
    """dask-jobqueue sets a SIGINT handler on import, which only the main thread
    may do: importing sciimg.pipeline from a task's thread must still work, and
    leave the main thread's handler alone."""
    import subprocess
    import sys

    code = (
        "import signal, threading\n"
        "errors = []\n"
        "def load():\n"
        "    try:\n"
        "        import sciimg.pipeline\n"
        "    except Exception as exc:\n"
        "        errors.append(repr(exc))\n"
        "t = threading.Thread(target=load); t.start(); t.join()\n"
        "print(errors, signal.getsignal(signal.SIGINT) is signal.default_int_handler)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[] True"


def test_batch_workers_get_the_settings_of_local_ones():
    """A batch worker reads its own configuration: its job's prologue carries
    the profiler and malloc settings sciimg gives the workers it starts."""
    import shlex
    import subprocess
    import sys

    from sciimg.pipeline._own_settings import worker_prologue

    cfg = ClusterConfig(kind="slurm", memory="8GB", job_script_prologue=["A=1"])
    lines = worker_prologue(cfg)
    assert lines[0] == "A=1" and "module" not in lines
    probe = (
        "import dask, distributed\n"
        "from distributed.nanny import _get_env_variables as env\n"
        "print(sorted(env('distributed.nanny.pre-spawn-environ')),"
        " dask.config.get('distributed.worker.profile.enabled'))\n"
    )
    script = "\n".join([*lines, f"{sys.executable} -c {shlex.quote(probe)}"])
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    names, profile = out.stdout.rsplit(" ", 1)
    assert "MALLOC_TRIM_THRESHOLD_" not in names and "OMP_NUM_THREADS" in names
    assert profile.strip() == "False"
    profiled = worker_prologue(cfg.model_copy(update={"profile": True}))
    assert not any("PROFILE" in line for line in profiled)
