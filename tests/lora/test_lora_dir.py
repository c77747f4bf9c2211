"""`--lora-dir`: lora_path resolves (symlinks, `..`) before the containment check."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from infleet.lora.adapter_dir import find_files
from infleet.lora.errors import AdapterError
from infleet.lora.lora_dir import resolve_inside


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "adapters"
    (root / "tenant-a" / "sql").mkdir(parents=True)
    (tmp_path / "secret").mkdir()
    (root / "escape").symlink_to(tmp_path / "secret")
    (root / "alias").symlink_to(root / "tenant-a" / "sql")
    return root


def test_inside_paths_resolve(tree: Path):
    real = tree / "tenant-a" / "sql"
    assert resolve_inside(tree, "tenant-a/sql") == real
    assert resolve_inside(tree, str(real)) == real
    assert resolve_inside(tree, "tenant-a/../tenant-a/sql") == real
    assert resolve_inside(tree, "alias") == real  # a symlink that stays inside is fine
    assert resolve_inside(str(tree / "tenant-a" / ".."), "tenant-a/sql") == real


@pytest.mark.parametrize(
    "lora_path",
    ["..", "../secret", "tenant-a/../../secret", "escape", "escape/x", "/etc", ".", "", "a\0b"],
)
def test_outside_paths_refused(tree: Path, lora_path: str):
    with pytest.raises(AdapterError) as caught:
        resolve_inside(tree, lora_path)
    assert caught.value.field == "lora_path"
    assert "secret" not in str(caught.value).replace(lora_path, "")  # never says where it points


def test_symlinked_file_inside_an_adapter_dir_is_refused(tree: Path, tmp_path: Path):
    adapter = tree / "tenant-a" / "sql"
    (adapter / "adapter_config.json").write_text("{}")
    (tmp_path / "secret" / "weights").write_bytes(b"x")
    os.symlink(tmp_path / "secret" / "weights", adapter / "adapter_model.safetensors")
    assert find_files(adapter).weights == adapter / "adapter_model.safetensors"
    with pytest.raises(AdapterError, match="resolves outside --lora-dir"):
        find_files(adapter, lora_dir=tree)
