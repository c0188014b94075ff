"""compose.yaml and its overrides as data: merged and interpolated as Compose does it.

Native tests and the native benchmark start the services from this data, so
they run what Compose runs; tests/test_compose_config.py checks the result
against `docker compose config` for every combination of files.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

import compose_settings

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "compose.yaml"
TEAM_COMPOSE_FILE = REPO / "compose.team.yaml"
EXTERNAL_COMPOSE_FILE = REPO / "compose.external.yaml"
SECRETS_IN_CONTAINER = "/run/secrets/stack"

_EXPRESSION = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::([-?])(.*))?", re.S)


def compose_files(team: bool = False, external: bool = False) -> list[Path]:
    """The files, in Compose's order, for local or team mode, with bundled or external services: as make
    picks them for COMPOSE_FILE=compose.yaml[:compose.external.yaml]."""
    named = [COMPOSE_FILE] + ([EXTERNAL_COMPOSE_FILE] if external else [])
    settings = {"COMPOSE_FILE": ":".join(path.name for path in named), "COMPOSE_PATH_SEPARATOR": ":"}
    return [REPO / name for name in compose_settings.compose_files(settings, team=team)]


def _closing_brace(value: str, start: int) -> int:
    """The index of the `}` closing the `${` at `start`, nested `${...}` included."""
    depth = 0
    for index in range(start, len(value)):
        if value.startswith("${", index):
            depth += 1
        elif value[index] == "}":
            depth -= 1
            if depth == 0:
                return index
    raise ValueError(f"unclosed ${{ in {value!r}")


def interpolate(value: str, environ: Mapping[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} (defaults may nest), ${VAR:?error} and $$ for a literal $.

    As in Compose, a set but empty variable counts as unset for :- and :?.
    """
    out: list[str] = []
    index = 0
    while index < len(value):
        if value.startswith("$$", index):
            out.append("$")
            index += 2
        elif value.startswith("${", index):
            end = _closing_brace(value, index)
            name, kind, text = _EXPRESSION.fullmatch(value[index + 2:end]).groups()
            if environ.get(name):
                out.append(environ[name])
            elif kind == "?":
                raise KeyError(f"{name}: {text}")
            else:
                out.append(interpolate(text or "", environ))
            index = end + 1
        else:
            out.append(value[index])
            index += 1
    return "".join(out)


def _interpolate_tree(node: Any, environ: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, environ)
    if isinstance(node, list):
        return [_interpolate_tree(item, environ) for item in node]
    if isinstance(node, dict):
        return {key: _interpolate_tree(value, environ) for key, value in node.items()}
    return node


class _Reset:
    """Compose's `!reset` tag: the key is removed from the merged result."""


class _Override:
    """Compose's `!override` tag: the value replaces, instead of merging with, the earlier one."""

    def __init__(self, value: Any) -> None:
        self.value = value


class _ComposeLoader(yaml.SafeLoader):
    pass


_ComposeLoader.add_constructor("!reset", lambda loader, node: _Reset())
_ComposeLoader.add_constructor("!override", lambda loader, node: _Override(
    loader.construct_mapping(node, deep=True) if isinstance(node, yaml.MappingNode)
    else loader.construct_sequence(node, deep=True)))


def _mount_target(volume: str | dict) -> str:
    """Where a volume entry (short or long syntax) is mounted in the container."""
    return volume["target"] if isinstance(volume, dict) else volume.split(":")[1]


def _merge(base: Any, override: Any, key: str = "") -> Any:
    """Compose's override rules, as far as this repository uses them: maps merge,
    `volumes` lists merge by mount target, other values are replaced."""
    if key == "volumes" and isinstance(base, list) and isinstance(override, list):
        targets = {_mount_target(volume) for volume in override}
        return [volume for volume in base if _mount_target(volume) not in targets] + override
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            if isinstance(value, _Reset):
                merged.pop(key, None)
            elif isinstance(value, _Override):
                merged[key] = value.value
            else:
                merged[key] = _merge(base[key], value, key) if key in base else value
        return merged
    return override


def load_compose(environ: Mapping[str, str] | None = None, team: bool = False,
                 external: bool = False) -> dict[str, Any]:
    """compose.yaml (plus the team and external overrides) with anchors merged and
    variables resolved against `environ`; services switched off by a profile are left out."""
    merged: Any = {}
    for path in compose_files(team, external):
        merged = _merge(merged, yaml.load(path.read_text(), Loader=_ComposeLoader))
    merged["services"] = {name: svc for name, svc in merged["services"].items() if not svc.get("profiles")}
    return _interpolate_tree(merged, environ or {})


def secret_files(service: dict[str, Any]) -> dict[str, str]:
    """Each file the service mounts from the secrets volume: its path in the container -> its name in the volume."""
    return {volume["target"]: volume["volume"]["subpath"] for volume in service.get("volumes") or []
            if isinstance(volume, dict) and volume.get("source") == "secrets" and "subpath" in volume.get("volume", {})}


def replace_all(text: str, replacements: Mapping[str, str]) -> str:
    for old, new in replacements.items():
        text = text.replace(old, new)
    return text


def service_env(service: dict[str, Any], replacements: Mapping[str, str]) -> dict[str, str]:
    """A service's environment with container addresses and paths replaced by native ones."""
    return {key: replace_all(str(value), replacements) for key, value in (service.get("environment") or {}).items()}
