"""common/paths.py: what a user most likely meant by a path that does not exist."""

from __future__ import annotations

from pathlib import Path

from common.paths import SUGGESTIONS, close_siblings, did_you_mean


def test_close_siblings_are_the_closest_accepted_names_beside_the_path(tmp_path):
    for name in ("features", "features-old", "feature", "notes", "fetaures.txt"):
        (tmp_path / name).mkdir()
    found = close_siblings(tmp_path / "featuers")
    assert found[0] == tmp_path / "features" and len(found) == SUGGESTIONS
    assert set(found) <= {tmp_path / name for name in ("features", "features-old", "feature", "fetaures.txt")}
    assert close_siblings(tmp_path / "featuers", accept=lambda entry: entry.name.endswith("old")) == [
        tmp_path / "features-old"
    ]
    assert close_siblings(tmp_path / "zzz") == []


def test_a_missing_parent_folder_gives_no_suggestion(tmp_path):
    assert close_siblings(tmp_path / "absent" / "features") == []


def test_did_you_mean_joins_the_suggestions_and_says_nothing_without_any():
    assert did_you_mean([Path("a"), Path("b")]) == "did you mean a or b?"
    assert did_you_mean([]) == ""
