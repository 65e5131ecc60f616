from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from support import REPO, make_mini_root  # noqa: E402

from tourserver.store.build import build  # noqa: E402
from tourserver.store.catalog import load_published  # noqa: E402


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> Path:
    """The bundled Chongqing tour, built once per test session."""
    data = tmp_path_factory.mktemp("demo-data")
    build(REPO, data)
    return data


@pytest.fixture(scope="session")
def demo_catalog(demo_data):
    return load_published(demo_data)


@pytest.fixture()
def mini_root(tmp_path) -> Path:
    return make_mini_root(tmp_path / "content")


@pytest.fixture()
def mini_data(mini_root, tmp_path) -> Path:
    data = tmp_path / "data"
    build(mini_root, data)
    return data


@pytest.fixture(scope="session")
def mini_built(tmp_path_factory) -> tuple[Path, Path]:
    """(content root, built data) of the mini tour, built once per test session."""
    base = tmp_path_factory.mktemp("mini-built")
    root = make_mini_root(base / "content")
    data = base / "data"
    build(root, data)
    return root, data
