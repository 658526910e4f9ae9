"""Compare algorithms over seeds (``relax-rl compare``, :mod:`relax_rl.cli.compare`): the runs
(:mod:`.runs`) and the reports (:mod:`.report`)."""

from relax_rl.compare.report import BASELINE, median_over_runs, summary_markdown, write_reports
from relax_rl.compare.runs import Job, plan, run_all, run_job

__all__ = ["BASELINE", "Job", "median_over_runs", "plan", "run_all", "run_job", "summary_markdown", "write_reports"]
