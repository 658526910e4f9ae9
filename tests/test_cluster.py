"""relax_rl.cluster on real Ray: map_runs, connection errors, and a tune study on a two-node cluster that
loses a node."""

import csv
import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from relax_rl.cluster import connect, map_runs
from relax_rl.errors import UsageError

REPO = Path(__file__).resolve().parent.parent
# Every case here meets a real Ray (the ray extra; CI installs it). Without it they skip, as the conftest's
# ray_session does; what a user without Ray is told is tested in test_tune.py.
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason='Ray is not installed (".[ray]")')


def test_map_runs_keeps_the_input_order_and_sets_torch_threads(ray_session):
    def probe(index, delay):  # defined here: cloudpickle sends it by value, the workers need not import tests/
        import time

        import torch

        time.sleep(delay)
        return index, torch.get_num_threads()

    # The first call sleeps longest, so the results would come back out of order if they were collected so.
    arguments = [(index, 0.2 * (4 - index)) for index in range(4)]
    assert map_runs(probe, arguments) == [(index, 1) for index in range(4)]
    assert map_runs(probe, [(7, 0.0)], cpus_per_run=2) == [(7, 2)]


def test_map_runs_raises_the_function_s_exception(ray_session):
    def fail(message):
        raise ValueError(message)

    with pytest.raises(ValueError, match="no such run"):
        map_runs(fail, [("no such run",)])


def test_connect_reuses_the_ray_of_this_process(ray_session):
    with connect("local") as connection:
        assert not connection.owned
    assert ray_session.is_initialized()  # closing a reused connection leaves Ray up


@pytest.mark.parametrize(
    ("address", "expected"),
    [("127.0.0.1:1", "cannot reach a Ray cluster there"), ("not-an-address", "expected auto, local, HOST:PORT")],
)
@needs_ray
def test_an_unusable_address_is_one_line(address, expected):
    with pytest.raises(UsageError) as error:
        connect(address)
    message = str(error.value)
    assert expected in message and "\n" not in message


# The cluster needs a Ray of its own, so it runs in a subprocess: the session's ray.init (conftest.py)
# and this cluster never share a process.
TWO_NODES = textwrap.dedent(
    """
    import sys, threading, time
    from pathlib import Path

    import ray
    from ray.cluster_utils import Cluster

    from relax_rl.cli.tune import main

    out = Path(sys.argv[1])
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    worker = cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    removed = threading.Event()

    def remove_the_worker_once_both_nodes_run_a_trial():
        # One CPU per node and per trial: two runs going at once means one of them is on the worker.
        while len([run for run in out.glob("trials/*/s0") if not (run / "metrics.json").exists()]) < 2:
            time.sleep(0.05)
        cluster.remove_node(worker, allow_graceful=False)
        removed.set()

    threading.Thread(target=remove_the_worker_once_both_nodes_run_a_trial, daemon=True).start()
    status = main(sys.argv[2:] + ["--out", str(out), "--ray", cluster.address])
    print("worker removed:", removed.is_set())
    ray.shutdown()
    cluster.shutdown()
    sys.exit(status)
    """
)


@needs_ray
def test_a_study_on_two_nodes_completes_after_losing_one(tmp_path):
    out = tmp_path / "study"
    # Runs long enough (several seconds even on an idle machine) for the worker's first trial to start while
    # the head's is still going: at 3000 timesteps a fast machine finished each before the next began, and
    # the worker was never removed.
    args = ["--algo", "a2c", "--hyperparams", "n_envs=2", "--total-timesteps", "15000", "--eval-freq", "5000"]
    args += ["--seeds", "1", "--trials", "4", "--pruner", "none"]
    result = subprocess.run(
        [sys.executable, "-c", TWO_NODES, str(out), *args], capture_output=True, text=True, cwd=REPO, timeout=400
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "worker removed: True" in result.stdout
    assert "lost its worker or node; running it again" in result.stdout
    rows = list(csv.DictReader((out / "trials.csv").open()))
    # Every trial is accounted for: the one on the lost node ran again, from scratch, on the head.
    assert [row["state"] for row in rows] == ["COMPLETE"] * 4
    for row in rows:
        assert (out / row["note"] / "s0" / "metrics.json").is_file()
    assert (out / "best.yml").is_file()


class _SlowStartRay:
    """Stands in for the ray module on a machine so loaded that its first starts time out (what Ray 2.x raises
    then is a bare Exception with this message); counts the starts and the clean-ups."""

    def __init__(self, failures: int):
        self.failures, self.inits, self.shutdowns = failures, 0, 0

    def init(self, **kwargs):
        self.inits += 1
        if self.inits <= self.failures:
            raise Exception(
                "The current node timed out during startup. This could happen because some of the raylet "
                "failed to startup or the GCS has become overloaded."
            )

    def shutdown(self):
        self.shutdowns += 1


@pytest.mark.parametrize(("failures", "started"), [(2, True), (3, False)])
def test_a_local_ray_that_times_out_at_start_up_is_started_again(failures, started, monkeypatch):
    from relax_rl import cluster

    fake = _SlowStartRay(failures)
    monkeypatch.setattr(cluster, "import_ray", lambda: fake)
    if started:
        cluster.start_local(num_cpus=1)
    else:
        with pytest.raises(RuntimeError, match="Ray did not start in 3 tries"):
            cluster.start_local(num_cpus=1)
    assert fake.inits == min(failures + 1, cluster.STARTUP_ATTEMPTS) and fake.shutdowns == failures
