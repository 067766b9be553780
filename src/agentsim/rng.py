"""One random root per run, with named, independent streams.

``Streams(seed)`` holds a :class:`numpy.random.SeedSequence`; ``streams.get("arrivals/chat")`` returns a
generator whose seed is derived from the root and a *stable* hash of the name (CRC-32, never Python's salted
``hash()``). Adding or consuming one stream therefore never shifts another, and two scenarios that differ only in
the cluster see the same agents and tasks: common random numbers across the points of a sweep.
"""

from __future__ import annotations

import zlib

import numpy as np


class Streams:
    """Named child generators of one seeded root."""

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)
        self._cache: dict[str, np.random.Generator] = {}

    def get(self, name: str) -> np.random.Generator:
        """The generator for ``name``: the same object on every call within a run."""
        gen = self._cache.get(name)
        if gen is None:
            key = zlib.crc32(name.encode("utf-8"))
            gen = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, key])))
            self._cache[name] = gen
        return gen
