"""`make run` keeps a developer's local.settings.json current without overwriting their choices."""

from __future__ import annotations

import json
from pathlib import Path

from localdev.settings_file import SAMPLE, create_local_settings, read_values

OLD_NOTICE = "This conversation was closed after {minutes} minutes without activity. Send anything to start again."


def _existing(tmp_path: Path, **values: str) -> Path:
    target = tmp_path / "local.settings.json"
    target.write_text(json.dumps({"IsEncrypted": False, "Values": values}))
    return target


def test_a_new_file_has_every_sample_setting_with_fresh_secrets(tmp_path: Path) -> None:
    values = read_values(create_local_settings(tmp_path / "local.settings.json"))
    sample = json.loads(SAMPLE.read_text())["Values"]
    assert values.keys() == sample.keys()
    assert "<generated" not in json.dumps(values)


def test_an_existing_file_gains_new_settings_and_keeps_the_developers_values(tmp_path: Path) -> None:
    target = _existing(tmp_path, ExpireAfterSeconds="42", ExpiryNoticeText="Bye after {duration}.")
    values = read_values(create_local_settings(target))
    assert values["ExpireAfterSeconds"] == "42" and values["ExpiryNoticeText"] == "Bye after {duration}."
    assert "SweepSchedule" in values


def test_an_earlier_samples_default_becomes_the_current_one(tmp_path: Path) -> None:
    """The old default read "closed after 1 minutes"; nobody chose it, so it is replaced."""
    target = _existing(tmp_path, ExpiryNoticeText=OLD_NOTICE)
    values = read_values(create_local_settings(target))
    assert values["ExpiryNoticeText"] == json.loads(SAMPLE.read_text())["Values"]["ExpiryNoticeText"]
    assert "{duration}" in values["ExpiryNoticeText"]
