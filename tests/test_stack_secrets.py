"""scripts/stack_secrets.py: random credentials made once, kept, never printed."""

from __future__ import annotations

import stack
from stack_secrets import SECRETS


def test_every_secret_is_generated_readable_and_long_enough(tmp_path):
    result = stack.run_script("stack_secrets.py", str(tmp_path))
    assert result.returncode == 0, result.stderr
    for name in SECRETS:
        value = (tmp_path / name).read_text()
        assert len(value) >= 12 and value.strip() == value
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o444


def test_secrets_differ_from_each_other_and_between_installs(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir(), second.mkdir()
    stack.run_script("stack_secrets.py", str(first)), stack.run_script("stack_secrets.py", str(second))
    values = [(d / name).read_text() for d in (first, second) for name in SECRETS]
    assert len(set(values)) == len(values)


def test_rerun_keeps_existing_secrets(tmp_path):
    stack.run_script("stack_secrets.py", str(tmp_path))
    before = {name: (tmp_path / name).read_text() for name in SECRETS}
    result = stack.run_script("stack_secrets.py", str(tmp_path))
    assert result.returncode == 0 and "kept" in result.stderr
    assert {name: (tmp_path / name).read_text() for name in SECRETS} == before


def test_values_never_reach_the_output(tmp_path):
    result = stack.run_script("stack_secrets.py", str(tmp_path))
    for name in SECRETS:
        assert (tmp_path / name).read_text() not in result.stdout + result.stderr


def test_missing_directory_is_a_clear_error(tmp_path):
    result = stack.run_script("stack_secrets.py", str(tmp_path / "absent"))
    assert result.returncode == 1 and "is not a directory" in result.stderr
