"""Team mode as teammates meet it: a throwaway team-mode project behind its TLS proxy, with accounts.

The public name is `localhost` on free ports and the proxy binds 127.0.0.1
only, so nothing listens beyond this machine; the certificate comes from the
proxy's locally generated CA and every client verifies it.
"""

from __future__ import annotations

from pathlib import Path

from lib import envfile
from lib import stack_config as cfg
from harness import guide
from harness.native import free_port
from harness.project import ComposeProject
from harness.proxy import send
from lib.mlflow_api import MlflowClient


class TeamDeployment(ComposeProject):
    """`make team-up`, `make team-ca` and `make user` for each person, in a clean copy."""

    def __init__(self, directory: Path) -> None:
        self.https_port, self.http_port = free_port(), free_port()
        # The public URL goes into .env by the README's own line (start); no TEAM_HTTPS_PORT: make
        # team-up takes the port from the URL.
        super().__init__(directory, {
            "COMPOSE_FILE": "compose.yaml:compose.team.yaml",
            "TEAM_HTTP_PORT": str(self.http_port), "TEAM_BIND_ADDRESS": "127.0.0.1"})
        self.url = f"https://localhost:{self.https_port}"
        self.ca = str(directory / "users" / "ca.crt")
        self.up_output = ""
        self.user_output: dict[str, str] = {}

    def start(self, people: tuple[str, ...]) -> None:
        """The README's team-mode block as written (its first person is alice), then an account for the rest."""
        assert people[0] == "alice"
        block = guide.filled(guide.block("README.md", "sh", 'echo "MLFLOW_PUBLIC_URL='), {
            "https://mlflow.internal.example": self.url, "/home/alice/.config/goose-mlflow/ca.crt": self.ca})
        self.up_output = guide.run(self, block).stdout
        self.user_output = {"alice": self.up_output}
        self.user_output.update({name: self.run("make", "user", f"NAME={name}", f"CA_FILE={self.ca}").stdout
                                 for name in people[1:]})

    def person_env_file(self, name: str) -> Path:
        return self.directory / "users" / f"{name}.env"

    def values(self, name: str) -> dict[str, str]:
        return envfile.parse(self.person_env_file(name).read_text())

    def password(self, name: str) -> str:
        return self.values(name)["MLFLOW_TRACKING_PASSWORD"]

    def auth(self, name: str) -> dict[str, str]:
        password = self.secret("mlflow-admin-password") if name == "admin" else self.password(name)
        return {"Authorization": cfg.basic_auth(name, password)}

    def client(self, name: str = "admin") -> MlflowClient:  # type: ignore[override]
        """MLflow's API through the proxy as `name`, verifying the certificate with the team's CA."""
        return MlflowClient(self.url, headers=self.auth(name), cafile=self.ca)

    def inside(self, name: str, call: str) -> str:
        """`MlflowClient.<call>` as `name` from inside the network, past the proxy (in the mlflow container):
        what the call returned, or the HTTP status MLflow refused it with."""
        script = ("import sys; sys.path.insert(0, 'scripts')\nfrom lib.mlflow_api import MlflowClient, MlflowApiError\n"
                  f"client = MlflowClient('http://127.0.0.1:5000', headers={self.auth(name)!r})\n"
                  f"try:\n    print(client.{call})\nexcept MlflowApiError as exc:\n    print(exc.status)")
        return self.exec("mlflow", "python3", "-c", script).strip()

    def request(self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes | None = None,
                with_ca: bool = True, port: int | None = None,
                chunked: bool = False) -> tuple[int, dict[str, str], bytes]:
        """One HTTPS request to the proxy (plain HTTP when `port` is the HTTP port): status, headers, body."""
        return send(port or self.https_port, self.ca if with_ca else None, method, path, headers, body,
                    plain=port == self.http_port, chunked=chunked)
