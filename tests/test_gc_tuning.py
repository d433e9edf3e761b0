"""GC_THRESHOLD: parsed strictly, and applied (freeze + thresholds) once a process started."""

from __future__ import annotations

import gc

import pytest

from server.gc_tuning import parse_threshold, tune_after_start
from server.settings import Settings


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, (10_000, 20, 20)),
        ("", (10_000, 20, 20)),
        ("default", None),
        ("DEFAULT", None),
        ("5000", (5000,)),
        ("5000,15,30", (5000, 15, 30)),
    ],
)
def test_parse(raw: str | None, expected: tuple[int, ...] | None) -> None:
    assert parse_threshold(raw) == expected


@pytest.mark.parametrize("raw", ["lots", "1,2,3,4", "-5", "10,x"])
def test_parse_refuses(raw: str, tmp_path: object) -> None:
    with pytest.raises(ValueError, match="integers"):
        parse_threshold(raw)
    with pytest.raises(SystemExit, match="GC_THRESHOLD must be 1 to 3 integers"):
        Settings.from_env({"DATA_DIR": str(tmp_path), "GC_THRESHOLD": raw})


def test_settings_read_it(tmp_path: object) -> None:
    env = {"DATA_DIR": str(tmp_path), "GC_THRESHOLD": "default"}
    assert Settings.from_env(env).gc_threshold is None
    env["GC_THRESHOLD"] = "3000,5"
    assert Settings.from_env(env).gc_threshold == (3000, 5)


def test_tune_after_start_freezes_and_sets_thresholds() -> None:
    before = gc.get_threshold()
    try:
        tune_after_start((12_345, 7, 9))
        assert gc.get_threshold() == (12_345, 7, 9)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_default_leaves_the_collector_alone() -> None:
    before = gc.get_threshold()
    tune_after_start(None)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
