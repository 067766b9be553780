"""A binary min-heap of entries ordered by ``(t, seq)``, for the engine's three priority queues.

The clock's events (time, insertion id), a replica's decode completions (finishing step, call id) and a KV
cache's eviction candidates (last use, stamp) are all ordered by a float and then an int. ``heapq`` over tuples
compares them with Python's generic rich comparison, element by element; in this module (compiled with mypyc,
see ``setup.py``) the keys are native fields of :class:`Keyed` and the comparisons are machine instructions.
The order is exactly ``heapq``'s on ``(t, seq)`` tuples (a test checks it against ``heapq``); entries carry
their payload in a subclass.
"""

from __future__ import annotations


class Keyed:
    """A heap entry: ordered by ``t``, then ``seq`` (unique per heap, so the order is total)."""

    __slots__ = ("seq", "t")

    def __init__(self, t: float, seq: int) -> None:
        self.t = t
        self.seq = seq


def push(heap: list[Keyed], e: Keyed) -> None:
    """Add ``e`` (``heapq.heappush``)."""
    heap.append(e)
    t, seq = e.t, e.seq
    pos = len(heap) - 1
    while pos > 0:  # sift the new entry up towards the root
        parent = (pos - 1) >> 1
        p = heap[parent]
        if t < p.t or (t == p.t and seq < p.seq):
            heap[pos] = p
            pos = parent
        else:
            break
    heap[pos] = e


def pop(heap: list[Keyed]) -> Keyed:
    """Remove and return the smallest entry (``heapq.heappop``); the heap must not be empty."""
    top = heap[0]
    e = heap.pop()
    n = len(heap)
    if n == 0:
        return top
    t, seq = e.t, e.seq
    pos = 0
    while True:  # sift the former last entry down from the root
        child = 2 * pos + 1
        if child >= n:
            break
        c = heap[child]
        right = child + 1
        if right < n:
            r = heap[right]
            if r.t < c.t or (r.t == c.t and r.seq < c.seq):
                child = right
                c = r
        if c.t < t or (c.t == t and c.seq < seq):
            heap[pos] = c
            pos = child
        else:
            break
    heap[pos] = e
    return top
