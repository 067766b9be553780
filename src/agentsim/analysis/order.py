"""Order statistics of more values than memory should hold: exact percentiles, means and sorted blocks.

A percentile needs every value (the p99 of ten million TTFTs is a value whose rank only all of them fix), but
not all at once. The values come from a :data:`Source`, a function that starts a fresh pass over them, chunk by
chunk (a run's Parquet file, a row group at a time). :class:`Ordered` reads them once; when they are at most
:data:`CAP`, it keeps them (one array, as before: the figures are numpy's own), otherwise it keeps only their
count, their sum and a histogram of their sort keys, and reads them again for what a statistic needs (from an
unnamed temporary file the first pass wrote them to, 8 bytes a value, rather than from the source):

* a percentile: only the histogram bins that hold the two ranks numpy interpolates between (a bin holding more
  than ``CAP`` values is split by a finer histogram of the next 16 bits of its keys, on another pass), then
  numpy's linear interpolation written out (:func:`interpolate`, equal to ``np.percentile`` bit for bit:
  ``tests/test_order.py``);
* everything in order (a Kaplan-Meier curve, :meth:`Ordered.blocks`): one pass scatters the values by histogram
  range into an unnamed temporary file (deleted by the system even if the process is killed; each range's
  count is known, so each has its own stretch), then each range is read back and sorted, at most ``CAP`` values
  at a time (a range of one bin holding more is split again by the next 16 bits; a single value repeated more
  than ``CAP`` times comes as several blocks of copies).

The sort key of a float64 is its bit pattern made monotone (the sign bit flipped for positives, every bit for
negatives), so a histogram of the keys' top bits is a histogram of the values in order, whatever their range.
The mean is numpy's ``mean`` of the kept array, or, for more values, the exactly rounded sum (``math.fsum``) of
each chunk's ``np.sum`` over the count: the same to a few units in the last place, and the same on every pass.
Memory: a few arrays of ``CAP`` float64 values (2 MB each) and 65,536-bin histograms, whatever the count; disk:
8 bytes per value while the blocks are read.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Final

import numpy as np

Source = Callable[[], Iterable[np.ndarray]]
"""A fresh pass over the values, chunk by chunk, always the same values in the same order (NaN-free)."""

CAP: Final = 1 << 18
"""Values kept at once, at most: 2 MB of float64."""

_BITS: Final = 16
"""Key bits a histogram resolves per level: 65,536 bins."""

_SIGN: Final = np.uint64(1 << 63)

_CHUNK: Final = 1 << 16
"""Values read back at a time from a temporary file."""


def keys(values: np.ndarray) -> np.ndarray:
    """Monotone uint64 sort keys of float64 ``values`` (no NaN): ``a < b`` exactly when ``key(a) < key(b)``
    (``-0.0`` and ``0.0`` are one value, as ``<`` sees them)."""
    v = np.ascontiguousarray(values, dtype=np.float64) + 0.0  # + 0.0: -0.0 becomes 0.0
    bits = v.view(np.uint64)
    return np.where(bits >= _SIGN, ~bits, bits | _SIGN)


def interpolate(n: int, percentiles: Iterable[float], value_at: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``np.percentile(a, percentiles)`` (method ``linear``) of an ``a`` of ``n`` values, from ``value_at``
    (the values at the given ranks of ``a`` sorted): numpy's own steps, in its order, so the same bits."""
    q = np.true_divide(np.asarray(list(percentiles), dtype=np.float64), 100)
    virtual = (n - 1) * q
    previous = np.floor(virtual)
    following = previous + 1
    last = virtual >= n - 1
    previous[last] = -1  # numpy's "the last value", which also enters its gamma below
    following[last] = -1
    gamma = virtual - previous
    prev_i = previous.astype(np.intp)
    next_i = following.astype(np.intp)
    a = value_at(np.where(prev_i < 0, n - 1, prev_i))
    b = value_at(np.where(next_i < 0, n - 1, next_i))
    diff = b - a
    out: np.ndarray = np.add(a, diff * gamma)
    np.subtract(b, diff * (1 - gamma), out=out, where=gamma >= 0.5)
    return out


class Ordered:
    """The values of a :data:`Source`, for order statistics in bounded memory (module docstring).

    ``rows``: an upper bound of their number known beforehand (a file's rows), to keep them in one pass when it
    is at most ``cap`` (default :data:`CAP`, read when called); otherwise the first pass counts them.
    ``tempdir``: where the temporary files go (the run's own directory, so that the disk check counts them;
    default: the system's temporary directory)."""

    def __init__(
        self, source: Source, rows: int | None = None, *, cap: int | None = None, tempdir: Path | None = None
    ) -> None:
        self.source = source
        self.cap = cap = CAP if cap is None else cap
        self.tempdir = tempdir
        self.kept: np.ndarray | None = None
        self.hist: np.ndarray | None = None
        if rows is not None and rows <= cap:
            chunks = [np.asarray(c, dtype=np.float64) for c in source()]
            self.kept = np.concatenate(chunks) if chunks else np.empty(0)
            self.n = int(self.kept.size)
            return
        hist = np.zeros(1 << _BITS, dtype=np.int64)
        sums: list[float] = []
        n = 0
        parts: list[np.ndarray] = []
        # The values are also written, as they come, to an unnamed temporary file: the passes after this one read
        # it (raw float64) rather than the source again (a Parquet file decoded and filtered every time).
        spool = tempfile.TemporaryFile(dir=tempdir)  # noqa: SIM115 (read by later passes: it lives as long as this object)
        for c in source():
            c = np.asarray(c, dtype=np.float64)
            if not c.size:
                continue
            n += c.size
            sums.append(float(np.sum(c)))
            hist += np.bincount((keys(c) >> np.uint64(64 - _BITS)).astype(np.intp), minlength=1 << _BITS)
            spool.write(np.ascontiguousarray(c).tobytes())
            if n <= cap:
                parts.append(c)
            else:
                parts.clear()
        self.n = n
        if n <= cap:  # fewer than thought: kept after all
            spool.close()
            self.kept = np.concatenate(parts) if parts else np.empty(0)
            return
        spool.flush()
        self.source = _FileRegion(spool, 0, n)  # closed with this object (the file is then gone)
        self.hist = hist
        try:
            self._mean = math.fsum(sums) / n
        except (ValueError, OverflowError):  # infinities of both signs, or a sum past the largest float: numpy's
            self._mean = float(np.sum(np.asarray(sums))) / n

    def mean(self) -> float | None:
        """The mean (module docstring), ``None`` without values."""
        if self.n == 0:
            return None
        return float(self.kept.mean()) if self.kept is not None else self._mean

    def percentiles(self, percentiles: Iterable[float]) -> list[float]:
        """``np.percentile`` of the values (linear), bit for bit; an empty list of values has none."""
        ps = list(percentiles)
        if self.kept is not None:
            return [float(x) for x in np.percentile(self.kept, ps)]
        return [float(x) for x in interpolate(self.n, ps, self.at)]

    def at(self, ranks: np.ndarray) -> np.ndarray:
        """The values at ``ranks`` (0-based) of the values sorted. Level by level, each rank's histogram bin is
        either small enough to collect (at most ``cap`` values) or split by a histogram of the next 16 key bits;
        one pass over the values serves every rank of a level, so at most four passes (and one, usually)."""
        ranks = np.asarray(ranks, dtype=np.int64)
        if self.kept is not None:
            picked: np.ndarray = np.sort(self.kept)[ranks]
            return picked
        assert self.hist is not None
        out = np.empty(ranks.size)
        mask = np.uint64((1 << _BITS) - 1)
        # open questions: (rank within the range, the range's first key, the shift of its bins, its histogram,
        # the places in ``out`` it answers)
        level: list[tuple[int, int, int, np.ndarray, list[int]]] = [
            (int(r), 0, 64 - _BITS, self.hist, [i]) for i, r in enumerate(ranks.tolist())
        ]
        while level:
            collect: dict[tuple[int, int], list[tuple[int, list[int]]]] = {}
            refine: dict[tuple[int, int, int], list[tuple[int, list[int]]]] = {}
            for rank, base, shift, hist, places in level:
                cum = np.cumsum(hist)
                b = int(np.searchsorted(cum, rank, side="right"))
                local = rank - (int(cum[b - 1]) if b else 0)
                lo = base | (b << shift)
                hi = lo + (1 << shift) - 1
                if shift == 0 or int(hist[b]) <= self.cap:
                    collect.setdefault((lo, hi), []).append((local, places))
                else:
                    refine.setdefault((lo, hi, shift - _BITS), []).append((local, places))
            parts: dict[tuple[int, int], list[np.ndarray]] = {k: [] for k in collect}
            hists = {k: np.zeros(1 << _BITS, dtype=np.int64) for k in refine}
            bounds = {k: (np.uint64(k[0]), np.uint64(k[1])) for k in (*collect, *refine)}
            for c in self.source():
                c = np.asarray(c, dtype=np.float64)
                k = keys(c)
                for r in parts:
                    lo_k, hi_k = bounds[r]
                    if r[0] == r[1] and parts[r]:
                        continue  # one key: one value is all of them
                    part = c[(k >= lo_k) & (k <= hi_k)]
                    if part.size:
                        parts[r].append(part[:1] if r[0] == r[1] else part)
                for q, h in hists.items():
                    lo_k, hi_k = bounds[q]
                    inside = k[(k >= lo_k) & (k <= hi_k)]
                    h += np.bincount(((inside >> np.uint64(q[2])) & mask).astype(np.intp), minlength=1 << _BITS)
            for r, asks in collect.items():
                values = np.concatenate(parts[r])
                for local, places in asks:
                    out[places] = values[0] if r[0] == r[1] else np.partition(values, local)[local]
            level = [(local, q[0], q[2], hists[q], places) for q, asks in refine.items() for local, places in asks]
        return out

    def blocks(self) -> Iterator[np.ndarray]:
        """The values in ascending order, as consecutive blocks of at most ``cap`` values (module docstring)."""
        if self.kept is not None:
            if self.kept.size:
                yield np.sort(self.kept)
            return
        assert self.hist is not None
        yield from _sorted_blocks(self.source, self.hist, np.uint64(0), 64 - _BITS, self.cap, self.tempdir)


def _sorted_blocks(
    source: Source, hist: np.ndarray, base: np.uint64, shift: int, cap: int, tempdir: Path | None
) -> Iterator[np.ndarray]:
    """The values of ``source`` (whose keys all start with ``base`` and whose histogram by the 16 key bits above
    ``shift`` is ``hist``) in ascending blocks of at most ``cap``: the histogram's bins are grouped into ranges
    of at most ``cap`` values (a bin of more is a range of its own); one pass writes each value into its range's
    place in an unnamed temporary file (each range's size is known, so each has its own stretch of the file);
    then each range is read back and sorted, or, holding more than ``cap``, split the same way by the next 16
    bits (a single key: the same value repeated, given as blocks of copies)."""
    cum = np.concatenate(([0], np.cumsum(hist)))
    bounds = [0]  # bins [bounds[i], bounds[i + 1]) form range i
    while bounds[-1] < hist.size:
        b = bounds[-1]
        e = b + 1
        while e < hist.size and cum[e + 1] - cum[b] <= cap:
            e += 1
        bounds.append(e)
    edges = np.asarray(bounds, dtype=np.int64)
    start = cum[edges]  # each range's first value's place in the file
    mask = np.uint64((1 << _BITS) - 1)
    with tempfile.TemporaryFile(dir=tempdir) as f:
        fd = f.fileno()
        at = start[:-1].copy()
        for c in source():
            c = np.asarray(c, dtype=np.float64)
            if not c.size:
                continue
            bins = ((keys(c) >> np.uint64(shift)) & mask).astype(np.int64)
            ranges = np.searchsorted(edges, bins, side="right") - 1
            order = np.argsort(ranges)  # any order within a range: each is sorted when read back
            grouped, counts = c[order], np.bincount(ranges, minlength=at.size)
            pos = 0
            for r in np.flatnonzero(counts).tolist():
                n = int(counts[r])
                os.pwrite(fd, grouped[pos : pos + n].tobytes(), int(at[r]) * 8)
                at[r] += n
                pos += n
        for r in range(at.size):
            n = int(start[r + 1] - start[r])
            if n == 0:
                continue
            lo_bin, hi_bin = int(edges[r]), int(edges[r + 1])
            if n <= cap:
                block = _read(f, int(start[r]), n)
                block.sort()
                yield block
                continue
            # one bin of more than cap values (hi_bin == lo_bin + 1)
            if shift == 0:
                value = float(_read(f, int(start[r]), 1)[0])
                while n:
                    yield np.full(min(n, cap), value)
                    n -= min(n, cap)
                continue
            region = _FileRegion(f, int(start[r]), n)
            sub = shift - _BITS
            sub_hist = np.zeros(1 << _BITS, dtype=np.int64)
            for c in region():
                sub_hist += np.bincount(((keys(c) >> np.uint64(sub)) & mask).astype(np.intp), minlength=1 << _BITS)
            lo = base | (np.uint64(lo_bin) << np.uint64(shift))
            assert hi_bin == lo_bin + 1
            yield from _sorted_blocks(region, sub_hist, lo, sub, cap, tempdir)


class _FileRegion:
    """A stretch of float64 values in a file, as a :data:`Source` (read :data:`_CHUNK` values at a time)."""

    def __init__(self, f: Any, first: int, n: int) -> None:
        self.f, self.first, self.n = f, first, n

    def __call__(self) -> Iterator[np.ndarray]:
        for a in range(0, self.n, _CHUNK):
            yield _read(self.f, self.first + a, min(_CHUNK, self.n - a))


def _read(f: Any, first: int, n: int) -> np.ndarray:
    """``n`` float64 values of file ``f`` from value ``first`` on."""
    f.seek(first * 8)
    values: np.ndarray = np.fromfile(f, dtype=np.float64, count=n)
    if values.size != n:
        raise OSError(f"a temporary file of {values.size} values where {n} were written")
    return values
