"""Times to solve from two source trees side by side: ``run.py solve`` run in a tree before a change and in
one after it, each storing its rows under keys of its own ``results.json``.

    python benchmarks/speed/compare_solves.py --before /tmp/before/benchmarks/speed/results.json:KEY [...] \
        --after benchmarks/speed/results.json:KEY [...]

For each configuration (algorithm, envs, keywords) it prints, as a Markdown table, the seeds solved and the
medians of episodes, timesteps and seconds to solve on each side, with after / before as a ratio of medians and
its percentile-bootstrap interval over seeds (a seed that does not solve counts at what it reached).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "critic_replay"))
from aggregate import ratio_ci

METRICS = ("episodes", "timesteps", "seconds")


def _rows(sources: list[str]) -> dict[str, list[dict]]:
    """Rows of ``FILE:KEY`` sources, by configuration."""
    by_config: dict[str, list[dict]] = defaultdict(list)
    for source in sources:
        path, key = source.rsplit(":", 1)
        for row in json.loads(Path(path).read_text())[key]["rows"]:
            by_config[f"{row['algo']}, {row['n_envs']} envs, {json.dumps(row.get('kwargs', {}))}"].append(row)
    return by_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", nargs="+", required=True, help="FILE:KEY of results.json parts")
    parser.add_argument("--after", nargs="+", required=True, help="FILE:KEY of results.json parts")
    args = parser.parse_args()
    before, after = _rows(args.before), _rows(args.after)
    print(
        "| configuration | seeds solved (before, after) | "
        + " | ".join(f"{m}: before, after" for m in METRICS)
        + " | "
        + " | ".join(f"{m} after / before [95% CI]" for m in METRICS)
        + " |"
    )
    print("|---" * (2 + 2 * len(METRICS)) + "|")
    for config in [c for c in before if c in after]:
        a, b = after[config], before[config]
        solved = f"{sum(r['solved'] for r in b)}/{len(b)}, {sum(r['solved'] for r in a)}/{len(a)}"
        medians = [f"{np.median([r[m] for r in b]):.4g}, {np.median([r[m] for r in a]):.4g}" for m in METRICS]
        ratios = []
        for m in METRICS:
            point, low, high = ratio_ci([r[m] for r in a], [r[m] for r in b])
            ratios.append(f"{point:.2f} [{low:.2f}, {high:.2f}]")
        print(f"| {config} | {solved} | " + " | ".join(medians) + " | " + " | ".join(ratios) + " |")


if __name__ == "__main__":
    main()
