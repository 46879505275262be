"""`ftrl.jsonl.atomic_path`, the one atomic writer: files and folders appear whole or not at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from ftrl.jsonl import atomic_path


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_a_file_replaces_the_old_one_only_when_the_block_succeeds(tmp_path):
    target = tmp_path / "a.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old" and _hidden(tmp_path) == []
    with atomic_path(target) as temporary:
        assert temporary.parent == tmp_path and temporary.name.startswith(".a.json.")
        temporary.write_text("new")
    assert target.read_text() == "new" and _hidden(tmp_path) == []


def test_a_folder_replaces_the_old_folder_only_when_the_block_succeeds(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "weights").write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as temporary:
        temporary.mkdir()
        (temporary / "weights").write_text("half")
        raise RuntimeError("killed")
    assert (target / "weights").read_text() == "old" and _hidden(tmp_path) == []
    with atomic_path(target) as temporary:
        temporary.mkdir()
        (temporary / "config").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["config"] and _hidden(tmp_path) == []


def test_concurrent_writers_get_their_own_temporary(tmp_path):
    with atomic_path(tmp_path / "x") as first, atomic_path(tmp_path / "x") as second:
        assert first != second
        first.write_text("1")
        second.write_text("2")
    assert (tmp_path / "x").read_text() == "1"  # the outer block finished last


def test_a_checkpoint_save_clears_what_a_killed_save_left(tmp_path):
    torch = pytest.importorskip("torch")
    from ftrl.train.checkpoint import checkpoint_dir, list_checkpoints, save_checkpoint

    leftover = checkpoint_dir(tmp_path) / ".step_3.999-dead.tmp"
    leftover.mkdir(parents=True)
    (leftover / "trainable.safetensors").write_bytes(b"partial")
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    saved = save_checkpoint(tmp_path, model, optimizer, {"step": 3}, keep=2)
    assert saved == checkpoint_dir(tmp_path) / "step_3" and list_checkpoints(tmp_path) == [saved]
    assert sorted(p.name for p in checkpoint_dir(tmp_path).iterdir()) == ["step_3"]
