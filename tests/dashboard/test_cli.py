"""``cloudq dashboard``: refused on a public address without auth; the web stack stays out of
``import cloudq`` and ``cloudq --help``."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cloudq.dashboard.auth import authenticate, parse_basic_auth
from cloudq.dashboard.cli import check_exposure, is_loopback
from cloudq.errors import ConfigurationError
from tests.processes import CLOUDQ, ROOT

APP_REF = "tests.dashboard.dash_app"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLOUDQ, "-A", APP_REF, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "192.168.1.10", "dashboard.example"])
def test_a_public_address_without_basic_auth_is_refused(address: str) -> None:
    done = _run("dashboard", "--address", address, "--port", "0")
    assert done.returncode != 0
    assert f"refusing to serve the dashboard on {address} without --basic-auth" in done.stderr


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_loopback_may_go_without_auth(address: str) -> None:
    assert is_loopback(address)
    assert check_exposure(address, None) == {}


def test_basic_auth_takes_flowers_form_and_refuses_half_pairs() -> None:
    assert parse_basic_auth("a:1,b:two:colons") == {"a": "1", "b": "two:colons"}
    assert check_exposure("0.0.0.0", "a:1") == {"a": "1"}
    for bad in ("a", "a:", ":pw", "a:1,"):
        with pytest.raises(ConfigurationError, match="user:password"):
            parse_basic_auth(bad)


def test_authenticate_checks_name_and_password() -> None:
    import base64

    users = {"a": "pw", "b": "other"}

    def header(text: str) -> str:
        return "Basic " + base64.b64encode(text.encode()).decode()

    assert authenticate(header("a:pw"), users) == "a"
    assert authenticate(header("b:pw"), users) is None
    assert authenticate(header("a:pwx"), users) is None
    assert authenticate("Basic !!!", users) is None
    assert authenticate("Bearer x", users) is None
    assert authenticate(None, users) is None


def test_the_web_stack_is_imported_only_by_the_dashboard_command() -> None:
    probe = (
        "import sys\n"
        "import cloudq\n"
        "from cloudq.cli import run\n"
        "sys.argv = ['cloudq', '--help']\n"
        "try:\n    run()\nexcept SystemExit:\n    pass\n"
        "print('LOADED', sorted(m for m in ('starlette', 'uvicorn', 'jinja2') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "dashboard" in done.stdout, "the command is listed"
    assert "LOADED []" in done.stdout, done.stdout + done.stderr
    helped = _run("dashboard", "--help")
    assert helped.returncode == 0 and "--basic-auth" in helped.stdout
