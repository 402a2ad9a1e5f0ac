"""Which app does `flwr run` get, and with which config? Copies of the app, its config overrides
as flwr parses them, and the CLI's config.toml."""

from __future__ import annotations

import json
import math
import re
import shutil
import tomllib
from collections.abc import Mapping
from pathlib import Path

from tools.harness.launch import HarnessError

DEFAULT_COPY_IGNORE = (".git", ".venv", "venv", ".flwr", "__pycache__", "*.pyc", ".*_cache", "*.egg-info", "outputs")


def _toml_value(value: object) -> str:
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else "nan" if math.isnan(value) else "-inf" if value < 0 else "inf"
    if not isinstance(value, str):
        raise TypeError(f"Unsupported config value type {type(value).__name__} ({value!r}): use bool, int, float, str")
    # flwr splits "k=v" pairs with (\S+?)=('[^']*'|"[^"]*"|\S+): no newline, not both quote characters.
    if "\n" in value or "\r" in value or ('"' in value and "'" in value):
        raise ValueError(f"Config strings cannot contain newlines or both ' and \": {value!r}")
    return json.dumps(value) if '"' not in value else f"'{value}'"  # TOML basic (JSON escapes) or literal string


def format_config_overrides(config: Mapping[str, object]) -> list[str]:
    """One "key=<toml value>" string per entry (each goes after its own --run-config flag)."""
    if bad := [key for key in config if not key or re.search(r"[\s='\"]", key)]:
        raise ValueError(f"Invalid config keys: {bad}")
    return [f"{key}={_toml_value(value)}" for key, value in config.items()]


def _flags(flag: str, config: Mapping[str, object]) -> list[str]:
    return [arg for item in format_config_overrides(config) for arg in (flag, item)]


def _write_flwr_config(home: Path, default: str, connections: Mapping[str, Mapping[str, object]]) -> None:
    lines = ["[superlink]", f"default = {_toml_value(default)}"]
    for name, table in connections.items():
        lines += ["", f"[superlink.{name}]", *(f"{key} = {_toml_value(value)}" for key, value in table.items())]
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text("\n".join(lines) + "\n")


def comment_out_federations(pyproject: Path) -> None:
    """Comment out `[tool.flwr.federations*]` as flwr's migration does (same section pattern);
    a section already commented out stays as it is."""
    inside, lines = False, []
    for line in pyproject.read_text().splitlines(keepends=True):
        if match := re.match(r"\s*\[(.*)\]", line):
            inside = match.group(1).startswith("tool.flwr.federations")
        lines.append(f"# {line}" if inside and line.strip() else line)
    pyproject.write_text("".join(lines))


def declared_federation(pyproject: Path, name: str) -> dict | None:
    """The `[tool.flwr.federations.<name>]` table of an app, also once flwr's migration has
    commented the section out (it then lives in `$FLWR_HOME/config.toml`); None if absent."""
    lines, migrated = [], False
    for line in pyproject.read_text().splitlines():
        if match := re.match(r"\s*(# )?\[(.*)\]", line):
            migrated = bool(match.group(1)) and match.group(2).startswith("tool.flwr.federations")
        lines.append(line.removeprefix("# ") if migrated else line)
    table = tomllib.loads("\n".join(lines))
    for key in ("tool", "flwr", "federations", name):
        table = table.get(key) if isinstance(table, dict) else None
    return table if isinstance(table, dict) else None


def _copy_app(app_dir: Path, dest: Path, *, federations: bool = True) -> None:
    if dest.exists() or not (app_dir / "pyproject.toml").is_file():
        raise HarnessError(f"Need a fresh {dest} and a pyproject.toml in {app_dir}")
    shutil.copytree(app_dir, dest, symlinks=True, ignore=shutil.ignore_patterns(*DEFAULT_COPY_IGNORE))
    if not federations:
        comment_out_federations(dest / "pyproject.toml")


def app_with_clientapp(app_dir: Path, dest: Path, module: str, source: str) -> Path:
    """A copy of the app at ``dest`` whose ClientApp is ``module:app`` (``source`` written next to
    pyproject.toml), its federations commented out as Flower leaves them after a first run."""
    app = Path(
        shutil.copytree(app_dir, dest, ignore=shutil.ignore_patterns(*DEFAULT_COPY_IGNORE, "tests", "benchmarks"))
    )
    (app / f"{module}.py").write_text(source)
    pyproject = app / "pyproject.toml"
    original = 'clientapp = "whisper_example.client_app:app"'
    if original not in pyproject.read_text():
        raise HarnessError(f"{pyproject} does not declare {original}")
    pyproject.write_text(pyproject.read_text().replace(original, f'clientapp = "{module}:app"'))
    comment_out_federations(pyproject)
    return app
