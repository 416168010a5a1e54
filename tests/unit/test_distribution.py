"""The names cloudq is installed under: `cloudq` on the package index is someone else's project."""

from __future__ import annotations

from importlib.metadata import version

import pytest
from click.testing import CliRunner

from cloudq.adapters import find_factory
from cloudq.claimcheck import open_claim_check_store
from cloudq.cli import main
from cloudq.errors import AdapterNotFound
from cloudq.results import open_backend
from cloudq.testing import FakeClock


def test_version_comes_from_the_installed_distribution() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"cloudq, version {version('cloudqueue-tasks')}"


def test_the_package_and_its_distribution_agree_on_the_version() -> None:
    import cloudq

    assert cloudq.__version__ == version("cloudqueue-tasks")


def test_install_hints_name_our_distribution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("cloudq.adapters.load_plugin", lambda *_: None)
    monkeypatch.setattr("cloudq.results.load_plugin", lambda *_: None)
    monkeypatch.setattr("cloudq.claimcheck.load_plugin", lambda *_: None)
    with pytest.raises(AdapterNotFound, match=r"pip install 'cloudqueue-tasks\[pubsub\]'"):
        find_factory("pubsub")
    with pytest.raises(AdapterNotFound, match=r"pip install 'cloudqueue-tasks\[sqs\]'"):
        open_backend("dynamodb://t", FakeClock())
    with pytest.raises(AdapterNotFound, match=r"pip install 'cloudqueue-tasks\[servicebus\]'"):
        open_claim_check_store("azblob://c/p")
