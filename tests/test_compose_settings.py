"""scripts/host/compose_settings.py: the compose files and the proxy's port that make's team targets use."""

from __future__ import annotations

import pytest

import compose_settings as settings
from lib.errors import StackError


def test_settings_in_the_environment_win_over_dot_env(tmp_path):
    (tmp_path / ".env").write_text("MLFLOW_PUBLIC_URL=https://from-file.example\nexport GOOSE_EXPERIMENT=x\n")
    read = settings.read_settings(tmp_path, {"MLFLOW_PUBLIC_URL": "https://from-shell.example"})
    assert (read["MLFLOW_PUBLIC_URL"], read["GOOSE_EXPERIMENT"]) == ("https://from-shell.example", "x")


def test_compose_files_default_to_compose_yaml():
    assert settings.compose_files({}) == ["compose.yaml"]


def test_team_mode_adds_its_file_after_compose_yaml_so_external_overrides_it():
    files = settings.compose_files({"COMPOSE_FILE": "compose.yaml:compose.external.yaml"}, team=True)
    assert files == ["compose.yaml", "compose.team.yaml", "compose.external.yaml"]


def test_team_mode_keeps_compose_file_that_already_names_its_file():
    listed = "compose.yaml:compose.team.yaml:compose.external.yaml"
    assert settings.compose_files({"COMPOSE_FILE": listed}, team=True) == listed.split(":")


def test_compose_file_without_compose_yaml_is_refused_for_team_mode():
    with pytest.raises(StackError, match="COMPOSE_FILE=other.yaml does not name compose.yaml"):
        settings.compose_files({"COMPOSE_FILE": "other.yaml"}, team=True)


@pytest.mark.parametrize("url, port", [("https://localhost:8443", 8443), ("https://mlflow.example.com", 443),
                                       ("https://mlflow.example.com/", 443)])
def test_the_proxy_port_is_the_port_of_the_public_url(url, port):
    assert settings.team_https_port({"MLFLOW_PUBLIC_URL": url}) == port


def test_a_team_https_port_equal_to_the_urls_is_accepted():
    assert settings.team_https_port({"MLFLOW_PUBLIC_URL": "https://h:8443", "TEAM_HTTPS_PORT": "8443"}) == 8443


def test_a_team_https_port_that_disagrees_with_the_url_is_refused():
    with pytest.raises(StackError) as raised:
        settings.team_https_port({"MLFLOW_PUBLIC_URL": "https://localhost:8443", "TEAM_HTTPS_PORT": "443"})
    assert str(raised.value) == ("TEAM_HTTPS_PORT=443 disagrees with MLFLOW_PUBLIC_URL=https://localhost:8443 "
                                 "(port 8443): remove TEAM_HTTPS_PORT (the URL's port is used) or make them equal")


def test_team_mode_without_a_public_url_is_refused():
    with pytest.raises(StackError, match="team mode needs MLFLOW_PUBLIC_URL"):
        settings.team_https_port({"MLFLOW_PUBLIC_URL": ""})


def test_team_mode_with_a_plain_http_url_is_refused():
    with pytest.raises(StackError, match="is not https: team mode serves TLS only; write https://h:8080"):
        settings.team_https_port({"MLFLOW_PUBLIC_URL": "http://h:8080"})


def test_a_team_https_port_that_disagrees_with_a_url_without_a_port_is_refused():
    with pytest.raises(StackError, match=r"disagrees with MLFLOW_PUBLIC_URL=https://h.example \(port 443\)"):
        settings.team_https_port({"MLFLOW_PUBLIC_URL": "https://h.example", "TEAM_HTTPS_PORT": "8443"})


def test_compose_files_are_split_by_compose_path_separator():
    assert settings.compose_files({"COMPOSE_FILE": "compose.yaml;compose.external.yaml",
                                   "COMPOSE_PATH_SEPARATOR": ";"}, team=True) == [
        "compose.yaml", "compose.team.yaml", "compose.external.yaml"]


@pytest.mark.parametrize("dot_env, shell, printed", [("TRACE_RETENTION_DAYS=30\n", {}, "30\n"),
                                                     ("TRACE_RETENTION_DAYS=30\n", {"TRACE_RETENTION_DAYS": "7"}, "7\n"),
                                                     ("", {}, "\n")])
def test_one_setting_is_printed_as_compose_reads_it(tmp_path, monkeypatch, capsys, dot_env, shell, printed):
    (tmp_path / ".env").write_text(dot_env)
    monkeypatch.delenv("TRACE_RETENTION_DAYS", raising=False)
    for name, value in shell.items():
        monkeypatch.setenv(name, value)
    assert settings.main(["--directory", str(tmp_path), "setting", "TRACE_RETENTION_DAYS"]) == 0
    assert capsys.readouterr().out == printed


@pytest.mark.parametrize("files", [["/srv/stack/compose.yaml", "/srv/stack/compose.team.yaml"],
                                   "/srv/stack/compose.yaml,/srv/stack/compose.team.yaml,/srv/stack/compose.external.yaml"])
def test_the_team_file_among_the_files_or_the_label_means_team_mode(files):
    assert settings.is_team(files)


@pytest.mark.parametrize("files", [[], ["compose.yaml", "compose.external.yaml"], "/srv/compose.yaml",
                                   "/srv/my-compose.team.yaml.bak"])
def test_without_the_team_file_it_is_local_mode(files):
    assert not settings.is_team(files)
