"""One participant's randomisation: the order of the trials, which method is on the left, and
where the attention checks go. The page (``assets/study.js``) computes the same schedule in
JavaScript from the same seed, FNV-1a of ``study_id + "\\n" + participant``, and a mulberry32
generator; :func:`schedule` is its Python twin, so an analysis (and the tests) can check that a
response file records exactly the assignment its participant id implies.

Balance per participant: the rounds of each method pair put its first method on the left in
half of them (one more on a random side when odd), and the attention checks put the clear edit
on the left in half of them; the rounds come in a random order, with the checks spread evenly.
"""

from __future__ import annotations

M32 = 0xFFFFFFFF


def _imul(a: int, b: int) -> int:
    return ((a & M32) * (b & M32)) & M32


def fnv1a(text: str) -> int:
    """32-bit FNV-1a of ``text``'s UTF-8 bytes (JavaScript: ``fnv1a`` in study.js)."""
    h = 0x811C9DC5
    for byte in text.encode("utf-8"):
        h = _imul(h ^ byte, 0x01000193)
    return h


class Mulberry32:
    """The mulberry32 generator (Tommy Ettinger's, public domain), bit-exact with study.js."""

    def __init__(self, seed: int):
        self.a = seed & M32

    def __call__(self) -> float:
        self.a = (self.a + 0x6D2B79F5) & M32
        a = self.a
        t = _imul(a ^ (a >> 15), 1 | a)
        t = ((t + _imul(t ^ (t >> 7), 61 | t)) & M32) ^ t
        return ((t ^ (t >> 14)) & M32) / 4294967296


def _shuffle(xs: list, rng: Mulberry32) -> list:
    xs = list(xs)
    for i in range(len(xs) - 1, 0, -1):
        j = int(rng() * (i + 1))
        xs[i], xs[j] = xs[j], xs[i]
    return xs


def _balanced(n: int, rng: Mulberry32) -> list[bool]:
    """``n`` flags, half True (the odd one by a coin), in a random order."""
    flags = [True] * (n // 2) + [False] * (n // 2)
    if n % 2:
        flags.append(rng() < 0.5)
    return _shuffle(flags, rng)


def schedule(study_id: str, participant: str, pairs: list[int], n_checks: int) -> list[dict]:
    """The trials of ``participant`` in the order shown.

    ``pairs[k]``: the method-pair index of round ``k``. Each trial is ``{"kind": "round"|"check",
    "item": k, "first_left": bool}``: for a round, whether the pair's first method is on the left;
    for a check, whether the clear edit is.
    """
    rng = Mulberry32(fnv1a(f"{study_id}\n{participant}"))
    order = _shuffle(list(range(len(pairs))), rng)
    first_left = [False] * len(pairs)
    for p in sorted(set(pairs)):
        members = [k for k in range(len(pairs)) if pairs[k] == p]
        for k, f in zip(members, _balanced(len(members), rng)):
            first_left[k] = f
    check_left = _balanced(n_checks, rng)
    trials = [{"kind": "round", "item": k, "first_left": first_left[k]} for k in order]
    # check c goes after round floor((c + 1) * R / (C + 1)) of the shuffled rounds
    for c in reversed(range(n_checks)):
        at = ((c + 1) * len(pairs)) // (n_checks + 1)
        trials.insert(at, {"kind": "check", "item": c, "first_left": check_left[c]})
    return trials
