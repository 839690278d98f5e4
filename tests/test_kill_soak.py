"""The kill soak, kept short: five SIGKILLs at random points of scripted-endpoint runs, each run resumed (and maybe
killed again) until it ends exactly as an uninterrupted run ends (`benchmarks/kill_soak.py` is the long one)."""
from __future__ import annotations

from tests.soak import Soak


def test_five_kills_at_random_points_lose_and_duplicate_nothing(tmp_path, capsys):
    result = Soak(tmp_path, kills=5, seed=17).run()
    assert result.problems == []
    assert result.kills == 5 and result.resumed_ok == 5
    assert result.lost == 0 and result.duplicated == 0
