"""Experiments that exercise the estimators: the paper's toy problem and the binary VAE."""
