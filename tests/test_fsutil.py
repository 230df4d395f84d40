"""safe_rmtree: deleting agent-written trees without following planted symlinks (architecture §2, §7)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hyperhive.fsutil import UnsafePath, is_within, safe_rmtree


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    d = tmp_path / "outside"
    d.mkdir()
    (d / "precious.txt").write_text("keep me", encoding="utf-8")
    return d


def _tree(tmp_path: Path) -> Path:
    root = tmp_path / "victim"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "f.txt").write_text("x", encoding="utf-8")
    (root / "top.txt").write_text("y", encoding="utf-8")
    return root


def test_symlink_to_a_directory_inside_the_tree_is_unlinked_not_followed(tmp_path: Path, outside: Path) -> None:
    """A symlink an agent planted inside the tree is removed; the directory it points at and its
    files survive (architecture §7, purge)."""
    root = _tree(tmp_path)
    (root / "a" / "escape").symlink_to(outside)
    safe_rmtree(root)
    assert not os.path.lexists(root)
    assert (outside / "precious.txt").read_text(encoding="utf-8") == "keep me"


def test_symlink_to_etc_inside_the_tree_is_unlinked_not_followed(tmp_path: Path) -> None:
    """Links to /etc and to a file in /etc are unlinked; /etc is untouched."""
    root = _tree(tmp_path)
    (root / "etc").symlink_to("/etc")
    (root / "a" / "passwd").symlink_to("/etc/passwd")
    before = sorted(Path("/etc").iterdir())
    safe_rmtree(root)
    assert not os.path.lexists(root)
    assert Path("/etc/passwd").exists()
    assert sorted(Path("/etc").iterdir()) == before


def test_root_that_is_a_symlink_is_refused(tmp_path: Path, outside: Path) -> None:
    """The tree's root being a symlink is refused outright; neither link nor target is touched."""
    link = tmp_path / "link"
    link.symlink_to(outside)
    with pytest.raises(UnsafePath, match="symlink"):
        safe_rmtree(link)
    assert link.is_symlink()
    assert (outside / "precious.txt").exists()


def test_root_that_is_a_file_is_refused(tmp_path: Path) -> None:
    """safe_rmtree deletes directories only."""
    f = tmp_path / "file"
    f.write_text("x", encoding="utf-8")
    with pytest.raises(UnsafePath, match="not a directory"):
        safe_rmtree(f)
    assert f.exists()


def test_a_path_outside_within_is_refused(tmp_path: Path, outside: Path) -> None:
    """With `within`, a path that is not inside it (including via `..` or a symlinked parent) is refused."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "sneaky").symlink_to(tmp_path)
    with pytest.raises(UnsafePath, match="not inside"):
        safe_rmtree(outside, within=state)
    with pytest.raises(UnsafePath, match="not inside"):
        safe_rmtree(state / ".." / "outside", within=state)
    with pytest.raises(UnsafePath, match="not inside"):
        safe_rmtree(state / "sneaky" / "outside", within=state)
    with pytest.raises(UnsafePath, match="not inside"):
        safe_rmtree(state, within=state)
    assert (outside / "precious.txt").exists()


def test_a_tree_inside_within_is_deleted(tmp_path: Path) -> None:
    """The ordinary case: a real directory inside `within` goes away entirely."""
    root = _tree(tmp_path)
    safe_rmtree(root, within=tmp_path)
    assert not root.exists()
    assert is_within(tmp_path / "x" / "y", tmp_path)
    assert not is_within(tmp_path, tmp_path)


def test_a_missing_path_is_fine_unless_asked_otherwise(tmp_path: Path) -> None:
    """Purging twice is harmless; `missing_ok=False` reports the absence."""
    safe_rmtree(tmp_path / "nope")
    with pytest.raises(FileNotFoundError):
        safe_rmtree(tmp_path / "nope", missing_ok=False)


def test_a_tree_deeper_than_the_recursion_limit_is_deleted(tmp_path: Path) -> None:
    """An agent cannot make purge fail with a deeply nested tree: the walk is iterative."""
    root = tmp_path / "deep"
    root.mkdir()
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(1200):
            os.mkdir("d", dir_fd=fd)
            nfd = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        os.symlink("/etc", "l", dir_fd=fd)
    finally:
        os.close(fd)
    safe_rmtree(root)
    assert not root.exists()


def test_special_names_and_empty_directories_are_deleted(tmp_path: Path) -> None:
    """Hidden files, names with newlines and empty directories all go; dangling links too."""
    root = tmp_path / "odd"
    (root / ".git" / "objects").mkdir(parents=True)
    (root / "new\nline").write_text("x", encoding="utf-8")
    (root / "dangling").symlink_to(tmp_path / "does-not-exist")
    safe_rmtree(root)
    assert not os.path.lexists(root)
