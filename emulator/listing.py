"""DescribeJobs' listing kept sorted per job state, so a page of 50,000 FAILED jobs costs a slice, not
a sort. Each job has a creation sequence number (its age) and a fixed random rank (the `unordered`
listing); every state keeps both orders, so the order can be switched on a running emulator."""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Iterable, Iterator


class StateIndex:
    def __init__(self) -> None:
        self._by_age: dict[str, list[int]] = {}
        self._by_rank: dict[str, list[tuple[float, int]]] = {}
        self._rank: dict[int, float] = {}

    def add(self, seq: int, rank: float, state: str) -> None:
        self._rank[seq] = rank
        bisect.insort(self._by_age.setdefault(state, []), seq)
        bisect.insort(self._by_rank.setdefault(state, []), (rank, seq))

    def add_many(self, entries: Iterable[tuple[int, float]], state: str) -> None:
        """Many jobs at once (bulk seeding): one sort per order instead of an insert per job."""
        ages, ranks = self._by_age.setdefault(state, []), self._by_rank.setdefault(state, [])
        for seq, rank in entries:
            self._rank[seq] = rank
            ages.append(seq)
            ranks.append((rank, seq))
        ages.sort()
        ranks.sort()

    def move(self, seq: int, old: str, new: str) -> None:
        if old == new:
            return
        ages, ranks = self._by_age[old], self._by_rank[old]
        rank = self._rank[seq]
        del ages[bisect.bisect_left(ages, seq)]
        del ranks[bisect.bisect_left(ranks, (rank, seq))]
        bisect.insort(self._by_age.setdefault(new, []), seq)
        bisect.insort(self._by_rank.setdefault(new, []), (rank, seq))

    def count(self, states: Iterable[str]) -> int:
        return sum(len(self._by_age.get(s, ())) for s in set(states))

    def page(self, states: Iterable[str], order: str, offset: int, limit: int) -> list[int]:
        """The sequence numbers of one page of jobs in these states, in `order`."""
        wanted = sorted(set(states))
        if len(wanted) == 1:
            if order == "unordered":
                return [seq for _, seq in self._by_rank.get(wanted[0], [])[offset:offset + limit]]
            ages = self._by_age.get(wanted[0], [])
            if order == "oldest-first":
                return ages[offset:offset + limit]
            end = len(ages) - offset
            return ages[max(0, end - limit):max(0, end)][::-1]
        return list(self._merged(wanted, order))[offset:offset + limit]

    def ordered(self, states: Iterable[str], order: str) -> list[int]:
        return list(self._merged(sorted(set(states)), order))

    def _merged(self, states: list[str], order: str) -> Iterator[int]:
        if order == "unordered":
            return (seq for _, seq in heapq.merge(*(self._by_rank.get(s, []) for s in states)))
        merged = heapq.merge(*(self._by_age.get(s, []) for s in states))
        return iter(merged) if order == "oldest-first" else reversed(list(merged))

    def all_states(self) -> list[str]:
        return list(self._by_age)
