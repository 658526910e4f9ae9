"""relax_rl.compare and relax_rl.plot: subprocess runs, reports, learning curves."""

import json

import numpy as np
import pytest

from relax_rl import compare, plot
from relax_rl.cli import compare as compare_cli
from relax_rl.cli.plot import main as plot_main

SEEDS = 2


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    """A 2-seed a2c comparison on a tiny budget: (exit status, out dir)."""
    out = tmp_path_factory.mktemp("compare")
    argv = ["--env", "CartPole-v1", "--algos", "a2c", "--seeds", str(SEEDS), "--workers", "2", "--out", str(out)]
    status = compare_cli.main([*argv, "--total-timesteps", "500", "--n-envs", "2", "--hyperparams", "gamma=0.98"])
    return status, out


def test_compare_writes_every_report(comparison):
    status, out = comparison
    assert status == 0
    results = json.loads((out / "results.json").read_text())
    assert results["settings"]["hyperparams"] == ["gamma=0.98"]
    meta = results["meta"]  # what every results file carries: the command, when, where, from which code
    assert meta["command"].startswith("relax-rl compare --env CartPole-v1 --algos a2c")
    assert meta["date"].startswith("20") and "CPUs" in meta["machine"] and meta["commit"]
    runs = results["runs"]
    assert [(r["algo"], r["seed"], r["returncode"]) for r in runs] == [("a2c", 0, 0), ("a2c", 1, 0)]
    assert all(r["metrics"]["timesteps"] == 500 and r["metrics"]["seed"] == r["seed"] for r in runs)
    summary = (out / "summary.md").read_text()
    assert "0/2 solved" in summary and "475" in summary and "195" in summary
    assert "| a2c |" in summary and "Ratios" not in summary  # no relax_a2c to compare with
    png = out / "learning_curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_compare_refuses_to_overwrite_runs(comparison, capsys):
    _, out = comparison
    argv = ["--algos", "a2c", "--seeds", str(SEEDS), "--out", str(out), "--total-timesteps", "500"]
    assert compare_cli.main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert "already exist" in error and "\n" not in error


def test_plot_cli_groups_run_dirs_by_algorithm(comparison, tmp_path):
    _, out = comparison
    run_dirs = sorted((out / "runs" / "a2c").iterdir())
    assert plot.group_runs(run_dirs) == {"a2c": run_dirs}
    assert plot.run_thresholds(run_dirs) == [195.0, 475.0]
    assert plot_main([*map(str, run_dirs), "--out", str(tmp_path / "curves.png")]) == 0
    assert (tmp_path / "curves.png").stat().st_size > 10_000


def _metrics(solved_at, episodes=800, sps=1000.0, extra=None):
    return {
        "timesteps": 100_000,
        "episodes": episodes,
        "solve_window": 100,
        "solve_threshold": 475.0,
        "solved_at_episode": solved_at,
        "extra_thresholds": {"195": {"solved_at_episode": extra}},
        "final_mean_return": 400.0,
        "sps": sps,
        "wall_s": 60.0,
    }


def test_summary_censors_unsolved_runs_and_reports_ratios():
    by_algo = {
        "relax_a2c": [_metrics(300, sps=600.0, extra=100), _metrics(None, episodes=900, sps=600.0, extra=120)],
        "a2c": [_metrics(600, extra=200), _metrics(600, extra=200)],
    }
    summary = compare.summary_markdown(by_algo, "CartPole-v1")
    # The unsolved run counts as 900, and the median of two rests on it: a lower bound, and so is the ratio.
    assert "| relax_a2c | 1/2 solved | ≥ 600 [300, 900] (censored) |" in summary
    assert "| median episodes to solve 475 | ≥ 1.00 |" in summary
    assert "| median episodes to solve 195 | 0.55 |" in summary
    assert "| median SPS | 0.60 |" in summary


def test_no_ratio_of_medians_where_neither_side_solved():
    # What compare printed with 0 of 2 runs solved on each side: "median episodes to solve 475 | 0.38".
    by_algo = {
        "relax_a2c": [_metrics(None, episodes=300, extra=100), _metrics(None, episodes=320, extra=110)],
        "a2c": [_metrics(None, episodes=800, extra=None), _metrics(None, episodes=820, extra=400)],
    }
    summary = compare.summary_markdown(by_algo, "CartPole-v1")
    assert "| a2c | 0/2 solved | ≥ 810 [800, 820] (censored) |" in summary
    assert "| median episodes to solve 475 | n/a (neither median solved) |" in summary
    assert "| median episodes to solve 195 | ≤ 0.17 |" in summary  # relax's 105 over a2c's censored 610
    assert "half the runs or more did not solve" in summary


def test_median_is_the_median_over_seeds_not_the_mean():
    by_algo = {"a2c": [_metrics(solved) for solved in (100, 200, 300, 400, 5000)]}
    assert "| a2c | 5/5 solved | 300 [" in compare.summary_markdown(by_algo, "CartPole-v1")


def test_bootstrap_interval():
    runs = np.array([[1.0, 10.0], [3.0, 10.0]])
    mean, low, high = plot.bootstrap_interval(runs, lambda r: r.mean(axis=0))
    np.testing.assert_allclose(mean, [2.0, 10.0])
    np.testing.assert_allclose(low, [1.0, 10.0])
    np.testing.assert_allclose(high, [3.0, 10.0])


def test_bootstrap_interval_is_reproducible_and_leaves_numpys_stream_alone():
    runs = np.array([26.3, 35.3, 29.4, 36.2, 33.9, 56.1, 40.5, 46.0, 31.0, 24.8]).reshape(-1, 1)
    np.random.seed(1)
    expected_draw = np.random.rand()
    np.random.seed(1)
    intervals = [plot.bootstrap_interval(runs, lambda r: float(np.median(r)))[1:] for _ in range(3)]
    assert np.random.rand() == expected_draw
    assert intervals[0] == intervals[1] == intervals[2]


def test_plot_needs_a_finished_episode(tmp_path):
    empty = plot.Curve(returns=np.array([]), steps=np.array([]))
    with pytest.raises(ValueError, match="no run has a finished episode"):
        plot.plot_learning_curves({"a2c": [empty]}, tmp_path / "x.png")


def _curve(returns, lengths):
    return plot.Curve(returns=np.asarray(returns, dtype=float), steps=np.cumsum(np.asarray(lengths, dtype=float)))


def test_a_longer_run_is_drawn_to_its_end_and_the_band_only_where_every_run_has_data():
    short, long = _curve([10, 20, 30], [10, 10, 10]), _curve(np.arange(1, 101), np.full(100, 10))
    grid, values = plot._on_grid([short, long], lambda c: c.steps, window=1)
    assert grid[-1] == 1000  # the long run's last episode, not the short one's (30)
    assert np.isnan(values[0, grid > 30]).all() and not np.isnan(values[1]).any()
    figure = plot.learning_curve_figure({"a2c": [short, long]}, window=1)
    steps_axis = figure.axes[1]
    assert max(line.get_xdata().max() for line in steps_axis.get_lines()) == 1000
    assert "95% bootstrap band over seeds" in figure.get_suptitle()


def test_one_run_is_drawn_as_it_is_with_its_peak_and_a_title_that_says_so():
    returns = np.r_[np.full(120, 470.0), 475.13, np.full(50, 460.0)]
    curve = _curve(returns, np.full(len(returns), 500))
    figure = plot.learning_curve_figure({"relax_a2c": [curve]}, window=1, title="CartPole-v1")
    for axis in figure.axes:
        (line,) = axis.get_lines()[:1]
        assert line.get_ydata().max() == 475.13  # no grid to fall between episodes
    assert figure.get_suptitle() == "CartPole-v1: one run each"


def test_the_readmes_two_compare_lines_write_to_two_places_and_a_rerun_to_the_same():
    from relax_rl.cli.compare import _parser, default_out

    def out(line: str):
        return default_out(_parser("relax-rl compare").parse_args(line.split()))

    first = "--env CartPole-v1 --algos relax_a2c a2c --seeds 5 --workers 2"
    second = "--env CartPole-v1 --algos relax_a2c a2c --hyperparams relax_a2c:cv_learning_rate=3e-3"
    assert str(out(first)) == "runs/compare/CartPole-v1/relax_a2c-a2c"
    assert str(out(second)) == "runs/compare/CartPole-v1/relax_a2c-a2c_relax_a2c-cv_learning_rate=3e-3"
    assert out(first.replace("--seeds 5", "--seeds 10")) == out(first)  # more seeds extend the same comparison
