"""MLflow's trace view in a real browser (Debian's Chromium, Playwright): what a person sees of a goose session.

Locally on the published port, and in team mode through the proxy with a
person's account and the team's generated CA in the browser's trust store.
Screenshots: build/screenshots/ (CI keeps them; docs/trace-view.png is one).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from playwright.sync_api import Error as BrowserError

from harness.browser import chromium, open_goose_trace, screenshot, span_row, trust_ca
from harness.commands import experiment_id_in, source_and_emit

pytestmark = pytest.mark.docker

VIEWPORT = {"width": 1400, "height": 900}


def test_the_trace_view_shows_a_goose_session_with_its_chat_and_tool_spans_and_tokens(local_stack, tmp_path):
    session = f"browser-{uuid.uuid4().hex[:8]}"
    source_and_emit(local_stack.env_file, session)
    with chromium(tmp_path) as browser:
        page = browser.new_page(viewport=VIEWPORT)
        open_goose_trace(page, local_stack.url, experiment_id_in(local_stack.env_file), session)
        rows = {name: span_row(page, name) for name in
                ("invoke_agent goose", "chat gpt-4o", "execute_tool developer__shell")}
        screenshot(page, "local-trace")
    # The emitter's chat span reports 321 input and 45 output tokens.
    assert rows["chat gpt-4o"].splitlines()[2] == "366", rows


def test_the_trace_view_through_the_proxy_with_a_persons_account_and_the_team_ca(team_deployment, tmp_path):
    trust_ca(tmp_path, Path(team_deployment.ca))
    env_file = team_deployment.person_env_file("alice")
    session = f"browser-{uuid.uuid4().hex[:8]}"
    source_and_emit(env_file, session)
    with chromium(tmp_path) as browser:
        context = browser.new_context(viewport=VIEWPORT, http_credentials={
            "username": "alice", "password": team_deployment.password("alice")})
        page = context.new_page()
        open_goose_trace(page, team_deployment.url, experiment_id_in(env_file), session)
        rows = {name: span_row(page, name) for name in
                ("invoke_agent goose", "chat gpt-4o", "execute_tool developer__shell")}
        screenshot(page, "team-trace")
    assert rows["chat gpt-4o"].splitlines()[2] == "366", rows


def test_the_browser_refuses_the_team_server_without_the_team_ca(team_deployment, tmp_path):
    with chromium(tmp_path) as browser, pytest.raises(BrowserError, match="ERR_CERT_AUTHORITY_INVALID"):
        browser.new_page().goto(f"{team_deployment.url}/", timeout=60_000)


def test_the_team_server_refuses_a_browser_with_a_wrong_password(team_deployment, tmp_path):
    trust_ca(tmp_path, Path(team_deployment.ca))
    with chromium(tmp_path) as browser:
        page = browser.new_context(http_credentials={"username": "alice", "password": "not-her-password"}).new_page()
        response = page.goto(f"{team_deployment.url}/", timeout=60_000)
        assert response is not None and response.status == 401
        assert "goose-traces" not in page.content()
