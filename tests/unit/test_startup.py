"""Every command group and API router is imported at start-up: a missing one stops
`clearday` and the app with an error instead of dropping a whole section silently."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import EntryPoint

import pytest
import typer

from fleet import cli


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("module", ["fleet.jobs.cli", "fleet.plans.cli"])
def test_a_missing_fleet_command_module_stops_clearday(module: str) -> None:
    # None in sys.modules makes `import module` fail as if the file were gone.
    done = run_python(
        f"import sys; sys.modules[{module!r}] = None; "
        "sys.argv = ['clearday', '--help']; from fleet.cli import main; main()"
    )
    assert done.returncode != 0
    assert module in done.stderr


def test_a_missing_router_stops_the_app() -> None:
    done = run_python(
        "import sys; sys.modules['fleet.reports.api'] = None; from fleet.web.app import create_app"
    )
    assert done.returncode != 0
    assert "fleet.reports.api" in done.stderr


def test_every_command_group_is_registered() -> None:
    done = run_python(
        "import sys; sys.argv = ['clearday', '--help']; from fleet.cli import main; main()"
    )
    assert done.returncode == 0, done.stderr
    for command in ("import", "plan", "serve", "worker", "ingest", "simulate", "demo"):
        assert f"│ {command} " in done.stdout, command


def entry(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group="clearday.commands")


GOOD = {
    "ingest": entry("ingest", "ingest.cli:register"),
    "simulate": entry("simulate", "simulator.cli:register"),
    "demo": entry("demo", "simulator.demo:register"),
}


def test_an_upper_command_group_not_installed_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    installed = [GOOD["ingest"], GOOD["demo"]]
    monkeypatch.setattr(cli, "entry_points", lambda group: installed)
    monkeypatch.setattr(cli, "FLEET_COMMANDS", ())
    monkeypatch.setattr(cli, "app", typer.Typer())  # the real one stays untouched
    with pytest.raises(cli.CommandsMissing, match="simulate are not installed"):
        cli.register_commands()


def test_an_upper_command_group_that_cannot_load_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broken = [GOOD["ingest"], GOOD["demo"], entry("simulate", "simulator.renamed_cli:register")]
    monkeypatch.setattr(cli, "entry_points", lambda group: broken)
    monkeypatch.setattr(cli, "FLEET_COMMANDS", ())
    monkeypatch.setattr(cli, "app", typer.Typer())  # the real one stays untouched
    with pytest.raises(cli.CommandsMissing, match=r"`clearday simulate` commands .* cannot"):
        cli.register_commands()
