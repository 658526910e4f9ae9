import pytest
import torch

# The tests' small MLP policies run fastest on one CPU thread, as the README advises users
# (benchmarks/threads: several threads are many times slower on a busy machine); tests that need
# more threads ask for them.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def ray_session():
    """One Ray instance (2 CPUs, no dashboard) for every test that needs it, started on first use.

    Tests that need a cluster of their own (tests/test_cluster.py's two-node cluster) run it in a
    subprocess, so they never meet this one. Skipped only where Ray is not installed; CI installs it.
    """
    ray = pytest.importorskip("ray", reason='Ray is not installed (pip install -e ".[ray]")')
    if not ray.is_initialized():
        from relax_rl.cluster import start_local

        start_local(num_cpus=2)  # tried again if a loaded machine makes Ray miss its start-up time-out
    yield ray
    ray.shutdown()
