"""Hyper-parameter studies (``relax-rl tune``): Optuna locally, Ray Tune on a cluster.

- :mod:`.space`: search spaces (``configs/search/<algo>.yml``) as Optuna distributions;
- :mod:`.trial`: what a study is (:class:`StudySpec`), and one trial's K seeds through the Run API;
- :mod:`.study`: local Optuna (storage, resume, the trial loop); :mod:`.liveness`: stale trials;
- :mod:`.ray_study`: Ray Tune with OptunaSearch; :mod:`.outputs`: best.yml, the table, the plots;
- the command line is :mod:`relax_rl.cli.tune`.
"""

from relax_rl.tune.space import default_space_file, load_space
from relax_rl.tune.trial import OBJECTIVES, StudySpec, TrialOutcome, run_trial

__all__ = ["OBJECTIVES", "StudySpec", "TrialOutcome", "default_space_file", "load_space", "run_trial"]
