"""User-state merges after a conflict keep what other conversations wrote."""

from __future__ import annotations

from services.unit_of_work import _apply, _changes


def test_a_default_created_empty_profile_is_no_change() -> None:
    assert _changes({}, {"UserProfile": {}}) == []


def test_merge_applies_only_the_properties_this_turn_changed() -> None:
    before = {"UserProfile": {"name": "Alice", "visits": 1}, "e_tag": "1"}
    after = {"UserProfile": {"name": "Alice", "visits": 2}, "e_tag": "1"}
    fresh = {"UserProfile": {"name": "Alice", "colour": "blue", "visits": 1}, "e_tag": "2"}
    _apply(fresh, _changes(before, after))
    assert fresh == {"UserProfile": {"name": "Alice", "colour": "blue", "visits": 2}, "e_tag": "2"}


def test_a_greeting_turn_does_not_erase_a_name_saved_meanwhile() -> None:
    # Tab 2 loaded an empty user state and only created an empty profile; tab 1 saved the name meanwhile.
    fresh = {"UserProfile": {"name": "Alice"}, "e_tag": "2"}
    _apply(fresh, _changes({}, {"UserProfile": {}}))
    assert fresh["UserProfile"] == {"name": "Alice"}


def test_removed_properties_are_removed() -> None:
    fresh = {"UserProfile": {"name": "Alice", "nickname": "Al"}, "Other": 1}
    _apply(fresh, _changes({"UserProfile": {"nickname": "Al"}, "Other": 1}, {"UserProfile": {}, "Other": 1}))
    assert fresh == {"UserProfile": {"name": "Alice"}, "Other": 1}
