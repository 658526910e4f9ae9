"""Writing a run's files whole: atomic writes, and saving a model with its VecNormalize statistics."""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable
from pathlib import Path

from stable_baselines3.common.base_class import BaseAlgorithm

from relax_rl.safe_load import NORMALIZATION_ENTRY, normalization_to_json


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then move the result to ``path`` so readers never see a partial file.

    The temporary file sits in the same directory (``os.replace`` is only atomic within one file
    system), is hidden, and keeps the suffix because SB3 appends ``.zip`` to names without it.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        write(str(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def save_model(
    model: BaseAlgorithm,
    path: str | os.PathLike[str],
    stats_path: str | os.PathLike[str],
    write: Callable[[str], None] | None = None,
) -> None:
    """Atomically save ``model`` to ``path`` (with ``write(tmp_path)``, default ``model.save``) and, when it
    trains under VecNormalize, its statistics: inside the zip (so that they travel with a copied model),
    as SB3's pickle at ``stats_path`` and, for safe loading, as JSON beside it. The statistics go first,
    so a model file never exists without them."""
    vec_normalize = model.get_vec_normalize_env()
    if vec_normalize is None:
        atomic_write(path, write or model.save)
        return
    atomic_write(stats_path, vec_normalize.save)
    stats_json = json.dumps(normalization_to_json(vec_normalize))
    atomic_write(Path(stats_path).with_suffix(".json"), lambda tmp: Path(tmp).write_text(stats_json))

    def write_with_stats(tmp: str) -> None:
        (write or model.save)(tmp)
        with zipfile.ZipFile(tmp, "a", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(NORMALIZATION_ENTRY, stats_json)

    atomic_write(path, write_with_stats)


def stats_path_for(model_path: str | os.PathLike[str]) -> Path:
    """Where :func:`save_model` callers put the VecNormalize statistics belonging to ``model_path``."""
    model_path = Path(model_path)
    return model_path.with_name(f"{model_path.stem}_vecnormalize.pkl")
