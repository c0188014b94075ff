"""Bad input to the bootstrap: one clear line, non-zero exit, existing files untouched."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from harness.commands import run_script
from harness.native import SCRIPTS, free_port

USER_FILE = "# mine\nMLFLOW_PORT=5000\n"


def bootstrap(*args: str, env: dict[str, str] | None = None, **kwargs) -> tuple[int, str]:
    result = run_script("bootstrap.py", *args, env={"MLFLOW_PUBLIC_URL": "", "MLFLOW_PORT": "", **(env or {})},
                              **kwargs)
    return result.returncode, result.stderr


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "error" in line]


def test_unreachable_mlflow_names_the_url_and_leaves_env_file_alone(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text(USER_FILE)
    url = f"http://127.0.0.1:{free_port()}"
    code, stderr = bootstrap("--tracking-uri", url, "--env-file", str(env_file), "--timeout", "1")
    assert code == 1
    [line] = error_lines(stderr)
    assert f"{url}/health" in line and "make up" in line
    assert env_file.read_text() == USER_FILE


def test_invalid_experiment_name_is_refused_before_anything_is_written(tmp_path):
    env_file = tmp_path / ".env"
    code, stderr = bootstrap("--experiment", " padded ", "--env-file", str(env_file),
                             "--tracking-uri", "http://127.0.0.1:9")
    assert code == 1 and "invalid experiment name" in stderr
    assert not env_file.exists()


def test_overlong_experiment_name_is_refused(tmp_path):
    code, stderr = bootstrap("--experiment", "x" * 300, "--env-file", str(tmp_path / ".env"))
    assert code == 1 and "MLflow allows 256" in stderr


def test_env_file_in_missing_directory_is_refused(tmp_path):
    code, stderr = bootstrap("--env-file", str(tmp_path / "nope" / ".env"), "--tracking-uri", "http://127.0.0.1:9")
    assert code == 1
    [line] = error_lines(stderr)
    assert "does not exist" in line and "--env-file" in line


def test_unwritable_env_directory_is_refused_and_existing_file_kept():
    # Under /tmp, with a copy of the scripts and the system python3: the
    # unprivileged user we switch to (root may write anywhere) cannot reach
    # pytest's temp folders, the checkout or the test virtualenv.
    root = Path(tempfile.mkdtemp(prefix="goose-mlflow-ro-", dir="/tmp"))
    root.chmod(0o755)
    scripts = shutil.copytree(SCRIPTS, root / "scripts")
    directory = root / "project"
    directory.mkdir()
    env_file = directory / ".env"
    env_file.write_text(USER_FILE)
    env_file.chmod(0o444)
    directory.chmod(0o555)
    command = ["/usr/bin/python3", str(scripts / "bootstrap.py"), "--env-file", str(env_file),
               "--tracking-uri", "http://127.0.0.1:9"]
    if os.geteuid() == 0:
        command = ["runuser", "-u", "nobody", "--", *command]
    try:
        result = subprocess.run(command, capture_output=True, text=True, cwd="/", timeout=60)
        assert result.returncode == 1 and "permission denied" in result.stderr, result.stderr
        assert env_file.read_text() == USER_FILE
    finally:
        directory.chmod(0o755)
        shutil.rmtree(root)


def test_invalid_port_in_public_url_is_refused(tmp_path):
    code, stderr = bootstrap("--public-url", "http://localhost:99999", "--env-file", str(tmp_path / ".env"))
    assert code == 1 and "invalid port" in stderr


def test_non_numeric_mlflow_port_is_refused(tmp_path):
    code, stderr = bootstrap("--env-file", str(tmp_path / ".env"), env={"MLFLOW_PORT": "50o0"})
    assert code == 1 and "invalid port" in stderr
    assert not (tmp_path / ".env").exists()


def test_url_without_scheme_is_refused(tmp_path):
    code, stderr = bootstrap("--tracking-uri", "localhost:5000", "--env-file", str(tmp_path / ".env"))
    assert code == 1 and "not an http(s) URL" in stderr
