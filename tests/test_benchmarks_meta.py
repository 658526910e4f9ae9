"""Benchmark hygiene: every results file under benchmarks/ says when, on what machine and at which commit it
was measured, and benchmarks/run_all.sh has every benchmark folder."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"
RUN_ALL = BENCHMARKS / "run_all.sh"
FIELDS = ("date", "machine", "commit")
RESULTS_SUFFIXES = {".json", ".jsonl", ".csv"}


def _files() -> list[Path]:
    """The files under benchmarks/ that are committed or would be (git's view, so that the ignored run
    directories do not count); every file there without git."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", "benchmarks"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout.decode()
        paths = {ROOT / name for name in listed.split("\0") if name}
    except (OSError, subprocess.CalledProcessError):
        paths = set(BENCHMARKS.rglob("*"))
    return sorted(p for p in paths if p.is_file())


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".meta.json")


def _missing(record: object) -> list[str]:
    """The fields of FIELDS that ``record`` (a results object, or its ``meta``) lacks or leaves empty."""
    if not isinstance(record, dict):
        return list(FIELDS)
    meta = record.get("meta") if isinstance(record.get("meta"), dict) else {}
    return [field for field in FIELDS if not (record.get(field) or meta.get(field))]


def _problem(path: Path) -> str | None:
    """Why ``path`` does not record its date, machine and commit (None when it does)."""
    if _sidecar(path).is_file():
        missing = _missing(json.loads(_sidecar(path).read_text()))
        return f"its sidecar {_sidecar(path).name} lacks {missing}" if missing else None
    if path.suffix != ".json":
        return f"no sidecar {_sidecar(path).name}"
    data = json.loads(path.read_text())
    records = data if isinstance(data, list) else [data]
    missing = sorted({field for record in records for field in _missing(record)})
    if not records or missing:
        return f"lacks {missing or list(FIELDS)} (top level, under 'meta', or in a sidecar {_sidecar(path).name})"
    return None


RESULTS = [p for p in _files() if p.suffix in RESULTS_SUFFIXES and not p.name.endswith(".meta.json")]
SIDECARS = [p for p in _files() if p.name.endswith(".meta.json")]


def test_there_are_results_to_check():
    assert len(RESULTS) > 50


@pytest.mark.parametrize("path", RESULTS, ids=lambda p: str(p.relative_to(BENCHMARKS)))
def test_every_results_file_records_its_date_machine_and_commit(path: Path):
    assert _problem(path) is None, f"{path.relative_to(ROOT)}: {_problem(path)}"


def test_every_sidecar_belongs_to_a_results_file():
    orphans = [p for p in SIDECARS if not any(_sidecar(r) == p for r in RESULTS)]
    assert not orphans, f"sidecars without their results file: {orphans}"


def _folders() -> list[str]:
    return sorted(p.name for p in BENCHMARKS.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def test_run_all_has_a_function_for_every_benchmark_folder():
    text = RUN_ALL.read_text()
    assert _folders(), "no benchmark folders found"
    missing = [name for name in _folders() if f"bench_{name}() {{" not in text]
    assert not missing, f"benchmarks/run_all.sh has no bench_<folder>() for {missing}"


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_run_all_lists_every_benchmark_folder():
    listed = subprocess.run(["bash", str(RUN_ALL), "--list"], capture_output=True, text=True, check=True)
    assert "warning" not in listed.stderr, listed.stderr
    names = [line.split()[0] for line in listed.stdout.splitlines() if line.strip()]
    assert sorted(names) == _folders()
