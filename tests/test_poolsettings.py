"""`[pool]` in hive.toml (issue 13): parsed strictly, and what the limits come to."""

from __future__ import annotations

from pathlib import Path

import pytest

from hyperhive.config import load_config
from hyperhive.errors import StartupError
from hyperhive.poolsettings import PoolSettings, default_budget_mib, pool_settings


def test_defaults_and_a_full_table() -> None:
    assert pool_settings({}) == PoolSettings()
    budget = default_budget_mib()
    assert budget is not None, "this host's memory can be read"
    assert PoolSettings().warm_limit() == max(1, budget // PoolSettings().warm_mib), "half the host's memory"
    s = pool_settings({"pool": {"max_warm": 8, "budget_mib": 1040, "warm_idle_seconds": 30, "digest_seconds": 2.5,
                                "max_turns": 3, "warm_mib": 260}})  # fmt: skip
    assert (s.max_warm, s.budget_mib, s.warm_idle_seconds, s.digest_seconds, s.turn_limit()) == (8, 1040, 30.0, 2.5, 3)
    assert s.warm_limit() == 4, "the budget allows 4 at 260 MiB each, fewer than max_warm"
    assert pool_settings({"pool": {"max_warm": 0}}).warm_limit() == 0
    assert PoolSettings().turn_limit() >= 1
    assert (
        PoolSettings().warm_on_start is True
        and pool_settings({"pool": {"warm_on_start": False}}).warm_on_start is False
    )


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("pool = 3", "[pool] must be a table"),
        ("[pool]\nwarm = 1", "unknown keys: warm"),
        ("[pool]\nmax_warm = -1", "max_warm must be an integer >= 0"),
        ("[pool]\nmax_warm = true", "max_warm must be an integer"),
        ("[pool]\nwarm_idle_seconds = 0", "warm_idle_seconds must be a number >= 0.1"),
        ("[pool]\nmax_turns = 0", "max_turns must be an integer >= 1"),
        ("[pool]\nwarm_on_start = 1", "warm_on_start must be true or false"),
        ('[pool]\nwarm_on_start = "no"', "warm_on_start must be true or false"),
    ],
)
def test_bad_tables_are_one_clear_line(tmp_path: Path, table: str, message: str) -> None:
    (tmp_path / "hive.toml").write_text(table + "\n")
    with pytest.raises(StartupError) as caught:
        load_config(state_dir=tmp_path, run_dir=tmp_path / "run")
    assert message in str(caught.value)


def test_the_table_reaches_the_config(tmp_path: Path) -> None:
    (tmp_path / "hive.toml").write_text("[pool]\nmax_warm = 2\ndigest_seconds = 60\nwarm_on_start = false\n")
    config = load_config(state_dir=tmp_path, run_dir=tmp_path / "run")
    assert config.pool.max_warm == 2 and config.pool.digest_seconds == 60.0 and config.pool.warm_on_start is False
