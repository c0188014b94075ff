"""Per-person MLflow accounts (team mode): create, keep, rotate, remove.

Each account may write to the goose experiment and, unless refused, use the
prompt registry; nothing else of anyone's (the server's default permission is
NO_PERMISSIONS). The password is generated here, written
only into that person's env file (mode 0600) and never printed.
"""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path

from lib import envfile
from lib import stack_config as cfg
from lib.errors import StackError
from lib.mlflow_api import MlflowApiError, MlflowClient

_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
PASSWORD_BYTES = 18  # 24 URL-safe characters; MLflow wants at least 12
EXPERIMENT_PERMISSION = "EDIT"
# On every prompt: load the team's prompts; one's own are MANAGE (MLflow gives the creator MANAGE).
PROMPTS_PERMISSION = "READ"
USER_FILE_MODE = 0o600
USERS_DIR_MODE = 0o700
# Experiment name -> the id the stack made it with, beside the people's env files.
PIN_FILE = ".pinned-experiments.json"


def check_username(name: str) -> str:
    if not _USERNAME.match(name):
        raise StackError(f"invalid user name {name!r}: use 1-63 lower-case letters, digits, '.', '_' or '-'")
    return name


def password_works(base_url: str, name: str, password: str) -> bool:
    probe = MlflowClient(base_url, headers={"Authorization": cfg.basic_auth(name, password)})
    try:
        probe.current_user()
    except MlflowApiError as exc:
        if exc.status == 401:
            return False
        raise
    return True


def grant_exactly(client: MlflowClient, name: str, resource_type: str, resource_id: str, permission: str) -> None:
    """Give `name` exactly `permission` on the resource, replacing any other grant (MLflow refuses a
    second grant for the same resource, so a changed one is revoked first)."""
    current = client.permission(name, resource_type, resource_id)
    if current == permission:
        return
    if current != "NO_PERMISSIONS":
        client.revoke(name, resource_type, resource_id)
    client.grant(name, resource_type, resource_id, permission)


def grant_access(client: MlflowClient, name: str, experiment_id: str, prompts: bool | None) -> bool:
    """What an account may do (docs/evaluation.md): write to goose's experiment (traces, evaluation runs,
    assessments, judges) and, with `prompts`, register prompts and read every prompt; without, no prompt at
    all; None keeps what the account has (a new one gets prompts), so a password rotation widens nothing.
    Never a provider key of the AI Gateway: those are the admin's (make gateway-endpoint). Returns whether
    the account has prompts."""
    grant_exactly(client, name, "experiment", experiment_id, EXPERIMENT_PERMISSION)
    if prompts is None:
        prompts = client.permission(name, "prompt", "*") != "DENY"
    grant_exactly(client, name, "prompt", "*", PROMPTS_PERMISSION if prompts else "DENY")
    grant_exactly(client, name, "gateway_secret", "*", "DENY")
    return prompts


def check_managed_by_the_stack(client: MlflowClient, experiment: str, experiment_id: str) -> None:
    """Refuse an experiment a person manages: whoever created it (MLflow gives the creator MANAGE)
    could rename or delete it under everyone's env file, or hold it as a decoy of the team's."""
    for user in client.list_users():
        if user["is_admin"]:
            continue
        if client.permission(user["username"], "experiment", experiment_id) == "MANAGE":
            raise StackError(
                f"experiment {experiment!r} (id {experiment_id}) is managed by {user['username']}, not by the "
                f"stack; rename or delete it as the admin (docs/security.md), then rerun")


def pin_experiment(users_dir: Path, name: str, experiment_id: str) -> str:
    """Hold `name` to the id the stack first gave it: 'pinned' the first time, 'matches' after, and a
    StackError when the name now belongs to another experiment (renamed, deleted and made again)."""
    path = users_dir / PIN_FILE
    try:
        pins = json.loads(envfile.read_text(path) or "{}")
    except ValueError:
        raise StackError(f"{path} is not JSON; restore it from a backup or delete it to pin the experiments anew") \
            from None
    pinned = pins.get(name)
    if pinned == experiment_id:
        return "matches"
    if pinned is not None:
        raise StackError(
            f"experiment {name!r} is now id {experiment_id}, but the stack made it as id {pinned} ({path}); someone "
            f"renamed or deleted it: give id {pinned} its name back as the admin (docs/security.md), or delete "
            f"the entry in {path} to take id {experiment_id}")
    envfile.write_atomic(path, json.dumps({**pins, name: experiment_id}, indent=2, sort_keys=True) + "\n",
                         mode=USER_FILE_MODE)
    return "pinned"


def saved_password(env_file: Path) -> str | None:
    """The password an existing env file of ours carries, if any."""
    return envfile.parse(envfile.read_text(env_file)).get("MLFLOW_TRACKING_PASSWORD")


def prepare_users_dir(directory: Path) -> None:
    """Create the users folder private to its owner (the repository's owner when run as root)."""
    if directory.is_dir():
        return
    if not directory.parent.is_dir():
        raise StackError(f"cannot create {directory}: {directory.parent} does not exist; pass --env-file")
    directory.mkdir(mode=USERS_DIR_MODE)
    envfile.give_to_directory_owner(directory)


def ensure_account(client: MlflowClient, tracking_uri: str, name: str, experiment_id: str,
                   env_file: Path, rotate: bool, prompts: bool | None = None) -> tuple[str, str, bool]:
    """(password, what was done, whether it has prompts); grants every time, so a rerun repairs them."""
    existing = client.get_user(name)
    if existing is None:
        password = secrets.token_urlsafe(PASSWORD_BYTES)
        client.create_user(name, password)
        action = "created"
    elif rotate:
        password = secrets.token_urlsafe(PASSWORD_BYTES)
        client.update_password(name, password)
        action = "password rotated"
    else:
        password = saved_password(env_file)
        if password is None or not password_works(tracking_uri, name, password):
            raise StackError(f"user {name} exists but {env_file} holds no working password; "
                             "rerun with --rotate to issue a new one")
        action = "kept"
    return password, action, grant_access(client, name, experiment_id, prompts)


def remove_account(client: MlflowClient, name: str, env_file: Path) -> str:
    if client.get_user(name) is None:
        removed = "no such user"
    else:
        client.delete_user(name)
        removed = "deleted"
    env_file.unlink(missing_ok=True)
    return removed
