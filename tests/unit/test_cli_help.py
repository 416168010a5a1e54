"""Every ``--help`` a newcomer reads: it says what the command does, in the user's words."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from cloudq.cli import _add_plugin_commands, main

_add_plugin_commands()


def _paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            found += _paths(command, (*prefix, name))
        else:
            found.append((*prefix, name))
    return found


@pytest.mark.parametrize("path", _paths(main), ids=lambda p: " ".join(p) or "cloudq")
def test_help_speaks_to_users(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "seed" not in result.output.lower()  # the project's own history means nothing to a user


def test_demo_help_says_what_the_demo_is() -> None:
    text = CliRunner().invoke(main, ["demo", "--help"]).output
    assert "Celery" in text and "retried" in text and "countdown" in text
