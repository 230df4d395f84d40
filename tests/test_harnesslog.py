"""An agent's harness log on the host: stamped lines, private, rotated once, never through a link."""

from __future__ import annotations

from pathlib import Path

from hyperhive.harnesslog import HarnessLog


def test_lines_are_stamped_private_and_rotate_once(tmp_path: Path) -> None:
    path = tmp_path / "harness.log"
    log = HarnessLog(path, max_bytes=200)
    for n in range(20):
        log.write(f"line {n}")
    log.close()
    assert path.stat().st_mode & 0o777 == 0o600
    current, previous = path.read_text().splitlines(), (tmp_path / "harness.log.1").read_text().splitlines()
    assert current[-1].endswith(" line 19") and current[0][:4].isdigit()
    assert path.stat().st_size <= 200
    numbers = [int(line.rsplit(" ", 1)[1]) for line in previous + current]
    assert numbers == sorted(numbers) and numbers[-1] == 19
    assert not (tmp_path / "harness.log.2").exists()


def test_a_planted_link_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("untouched\n")
    (tmp_path / "harness.log").symlink_to(target)
    log = HarnessLog(tmp_path / "harness.log")
    log.write("must not land in the link's target")
    log.write("nor this")
    assert target.read_text() == "untouched\n"
