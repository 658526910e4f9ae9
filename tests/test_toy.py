"""The toy-problem command line: JSON output, input validation and figures."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest
import torch

from relax_rl.experiments import toy

FIELDS = {"estimator", "seed", "steps", "target", "theta", "loss", "log_var", "wall_s"}


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "relax_rl.experiments.toy", *args], capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def keep_threads() -> Iterator[None]:
    """``main`` pins torch to one thread; give the rest of the test session its threads back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_json_with_several_estimators_maps_names_to_results() -> None:
    proc = run_cli("--estimator", "exact", "relax", "--steps", "200", "--seed", "0", "--json")
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)  # the whole of stdout is one JSON object
    assert set(results) == {"exact", "relax"}
    for name, result in results.items():
        assert set(result) >= FIELDS
        assert result["estimator"] == name and result["steps"] == 200 and result["target"] == 0.499
    assert results["exact"]["theta"] < 0.5
    assert results["exact"]["log_var"] is None
    assert isinstance(results["relax"]["log_var"], float)


@pytest.mark.usefixtures("keep_threads")
def test_json_with_one_estimator_is_its_result(capsys: pytest.CaptureFixture[str]) -> None:
    toy.main(["--estimator", "exact", "--steps", "200", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert set(result) >= FIELDS and result["estimator"] == "exact"
    assert 0 < result["theta"] < 0.5
    # The exact loss is p (1 − t)² + (1 − p) t², which falls with θ.
    assert result["loss"] == pytest.approx(0.499**2 + result["theta"] * (1 - 2 * 0.499))


@pytest.mark.parametrize(
    ("args", "allowed"),
    [
        (["--estimator", "bogus"], "exact"),
        (["--estimator", "exact", "--target", "1.5"], "between 0 and 1"),
        (["--estimator", "exact", "--steps", "0"], "positive integer"),
    ],
)
def test_bad_input_exits_2_with_one_line(args: list[str], allowed: str) -> None:
    proc = run_cli(*args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1
    assert allowed in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.usefixtures("keep_threads")
def test_out_writes_the_figures(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    toy.main(["--estimator", "exact", "reinforce", "rebar", "relax", "--steps", "12", "--out", str(tmp_path)])
    pngs = {p.name for p in tmp_path.glob("*.png")}
    assert pngs == {"toy_loss_theta.png", "toy_log_variance.png", "toy_relaxation.png"}
    assert all((tmp_path / name).stat().st_size > 1000 for name in pngs)
    assert "relax" in capsys.readouterr().out


@pytest.mark.usefixtures("keep_threads")
def test_out_without_learned_control_variates_skips_the_relaxation_figure(tmp_path) -> None:
    toy.main(["--estimator", "reinforce", "--steps", "3", "--out", str(tmp_path), "--json"])
    assert {p.name for p in tmp_path.glob("*.png")} == {"toy_loss_theta.png", "toy_log_variance.png"}


def test_runs_are_reproducible_per_seed() -> None:
    first = toy.train("relax", steps=20, seed=3, target=0.499)
    again = toy.train("relax", steps=20, seed=3, target=0.499)
    assert first.theta == again.theta and first.log_var == again.log_var


def test_progress_in_a_log_is_plain_lines_not_a_bar(capsys):
    from relax_rl.experiments.cli_args import progress_steps

    assert list(progress_steps(20, "toy", enabled=True)) == list(range(1, 21))
    err = capsys.readouterr().err  # capsys is no terminal
    assert "\r" not in err
    assert err.splitlines() == [f"toy: step {s}/20 ({s / 20:.0%})" for s in range(2, 21, 2)]
    assert list(progress_steps(5, "toy", enabled=False)) == [1, 2, 3, 4, 5]
    assert capsys.readouterr().err == ""
