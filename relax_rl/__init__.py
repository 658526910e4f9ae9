"""relax-rl: unbiased, low-variance policy gradients with learned control variates."""

__version__ = "0.1.0"
