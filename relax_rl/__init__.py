"""relax-rl: unbiased, low-variance policy gradients with learned control variates."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy, so that `import relax_rl.estimators` does not pay for importing Stable-Baselines3.
    if name == "RelaxA2C":
        from relax_rl.agents import RelaxA2C

        return RelaxA2C
    raise AttributeError(f"module 'relax_rl' has no attribute {name!r}")


__all__ = ["RelaxA2C", "__version__"]
