"""What several test modules share: statistics, recordings, run artifacts, misbehaving envs, test problems."""
