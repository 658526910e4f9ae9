"""Counts the torch calls that make the host wait for a device (``.item()``, ``.cpu()``, a Python branch
on a tensor, ``nonzero``, a boolean mask as an index ...), on any device: what a CPU can prove about
a loop that must not sync on a GPU."""

from __future__ import annotations

import traceback
from collections import Counter

import torch as th
from torch.overrides import TorchFunctionMode

#: calls whose result the host needs at once: on CUDA each one synchronises with the device
SYNCING = {
    th.Tensor.item,
    th.Tensor.tolist,
    th.Tensor.numpy,
    th.Tensor.cpu,
    th.Tensor.__bool__,
    th.Tensor.__int__,
    th.Tensor.__float__,
    th.Tensor.__index__,
    th.Tensor.__format__,
    th.Tensor.nonzero,
    th.nonzero,
    th.Tensor.masked_select,
    th.masked_select,
    th.unique,
    th.Tensor.unique,
}


def _bool_index(args: tuple) -> bool:
    index = args[1] if len(args) > 1 else None
    indices = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, th.Tensor) and i.dtype == th.bool for i in indices)


class HostSyncs(TorchFunctionMode):
    """Inside ``with HostSyncs() as syncs:``, ``syncs.count`` counts syncing calls by where they were
    made (``file:line`` of the caller in relax_rl), and ``syncs.total`` all of them."""

    def __init__(self) -> None:
        super().__init__()
        self.count: Counter[str] = Counter()

    @property
    def total(self) -> int:
        return sum(self.count.values())

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        syncing = func in SYNCING or (func in (th.Tensor.__getitem__, th.Tensor.__setitem__) and _bool_index(args))
        if func is th.Tensor.to and "cpu" in (*args[1:], *kwargs.values()):  # .to("cpu"), as written
            syncing = True
        if syncing:
            stack = traceback.extract_stack()[:-1]
            # Optimizers keep their step counts on the host (unless capturable): their .item() waits for nothing.
            if not any("/torch/optim/" in frame.filename for frame in stack):
                self.count[self._caller(stack)] += 1
        return func(*args, **kwargs)

    @staticmethod
    def _caller(stack: list[traceback.FrameSummary]) -> str:
        ours = [f for f in stack if "relax_rl" in f.filename or "stable_baselines3" in f.filename]
        frame = ours[-1] if ours else stack[-1]
        return f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}"
