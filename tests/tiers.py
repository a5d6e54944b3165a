"""The fast tier's share of a parametrised table (see tests/conftest.py for the tiers).

A table of reference cases runs whole in the full tier; the fast tier keeps the few named
here, enough to catch a broken attack in minutes.
"""

from __future__ import annotations

import pytest


def fast_few(cases: dict, fast: tuple[str, ...]) -> list:
  """``pytest.param`` for every case (its key as id); those not in ``fast`` are marked slow."""
  unknown = set(fast) - set(cases)
  if unknown:
    raise KeyError(f"fast_few: no such cases {sorted(unknown)}; the table has {sorted(cases)}")
  return [pytest.param(value, id=key, marks=() if key in fast else pytest.mark.slow) for key, value in cases.items()]
