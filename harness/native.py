"""The stack's services without Docker, configured from compose.yaml (never copied).

PostgreSQL from the machine's binaries, the S3 stand-in of the offline images,
the one-shot jobs and MLflow through the image's own entrypoint, each with the
command and environment Compose gives the container; only container addresses,
ports and paths are replaced by native ones. The native tests and `make
bench`'s native target both start the stack through `NativeStack.start`.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2

from harness.compose_file import REPO, SECRETS_IN_CONTAINER, load_compose, replace_all, secret_files, service_env
from lib.mlflow_api import wait_until_healthy

SCRIPTS = REPO / "scripts"
ENTRYPOINT = REPO / "mlflow" / "docker-entrypoint.sh"
S3_STANDIN = REPO / ".ci" / "offline-images" / "silo" / "s3-standin"
START_TIMEOUT_S = 180


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def python_path_env() -> dict[str, str]:
    """PATH with this interpreter's bin first, so `python3` and `mlflow` are the test venv's; scripts/ on
    PYTHONPATH, as the image's ENV has it (the jobs in the services' folders import its lib)."""
    return {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": str(SCRIPTS)}


def find_postgres_bindir() -> Path:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    if candidates:
        return candidates[0].parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise RuntimeError("no PostgreSQL server binaries: apt-get install postgresql")


class NativePostgres:
    """A throwaway PostgreSQL server from the machine's binaries, run as an unprivileged user."""

    def __init__(self, root: Path, superuser_password_file: Path) -> None:
        self.bindir = find_postgres_bindir()
        self.root = root
        self.data = root / "data"
        self.sockets = root / "sockets"
        self.port = free_port()
        self.password_file = superuser_password_file
        self.run_as = "postgres" if os.geteuid() == 0 else None

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", self.run_as, "--"] if self.run_as else []
        subprocess.run([*prefix, *command], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        self.sockets.mkdir(parents=True)
        if self.run_as:
            entry = pwd.getpwnam(self.run_as)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
            os.chown(self.sockets, entry.pw_uid, entry.pw_gid)
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
                  "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={self.password_file}")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-w", "-l", str(self.root / "server.log"),
                  "-o", f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1", "start")

    def postmaster_pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def stop(self) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")


def run_in_entrypoint(command: list[str], env: Mapping[str, str], **popen: Any) -> subprocess.Popen:
    """Start `command` through the MLflow image's entrypoint, as the container does."""
    full_env = {**os.environ, **python_path_env(), **env}
    for name in ("PGPASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        full_env.pop(name, None)
    return subprocess.Popen(["sh", str(ENTRYPOINT), *command], env=full_env, **popen)


def native_env(service: dict[str, Any], replacements: Mapping[str, str]) -> dict[str, str]:
    """A service's environment, natively: each secret file it mounts becomes that file of the native
    secrets folder (replacements[SECRETS_IN_CONTAINER]), then the other replacements apply."""
    folder = Path(replacements[SECRETS_IN_CONTAINER])
    mounted = {target: str(folder / name) for target, name in secret_files(service).items()}
    return service_env(service, {**mounted, **replacements})


def stop_processes(processes: list[subprocess.Popen]) -> None:
    for process in reversed(processes):
        try:
            os.killpg(process.pid, 15)
        except (ProcessLookupError, PermissionError):
            process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


@dataclass
class NativeStack:
    """compose.yaml's services as native processes in a fresh folder under /tmp."""

    root: Path
    compose: dict[str, Any]
    replacements: dict[str, str]
    postgres: NativePostgres | None = None
    s3: subprocess.Popen | None = None
    s3_url: str = ""
    mlflow_url: str = ""
    mlflow_port: int = 0
    processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def secrets(self) -> Path:
        return self.root / "secrets"

    @classmethod
    def start(cls, prefix: str, mlflow_env: Mapping[str, str] | None = None) -> "NativeStack":
        """Credentials, S3, PostgreSQL, the database, bucket and migrate jobs, then MLflow: compose.yaml's order."""
        # Under /tmp with 0755: the unprivileged postgres user must reach it.
        root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
        root.chmod(0o755)
        port = free_port()
        stack = cls(root, load_compose({"MLFLOW_PORT": str(port)}), {SECRETS_IN_CONTAINER: str(root / "secrets")})
        try:
            stack.secrets.mkdir()
            stack.check_job("credentials", stack.run_job("credentials"))
            stack._start_s3()
            stack._start_postgres()
            stack.check_job("database", stack.run_job("database"))
            stack.check_job("bucket", stack.run_job("bucket"))
            stack.check_job("migrate", stack.run_job("migrate", "--backups", str(root / "backups")))
            server, stack.mlflow_url = stack.start_mlflow(stack.compose, stack.replacements, port, "mlflow.log",
                                                          mlflow_env)
            stack.processes.append(server)
            stack.mlflow_port = port
        except BaseException:
            stack.stop()
            raise
        return stack

    def _start_s3(self) -> None:
        """The MinIO stand-in the Docker tests use too, with compose.yaml's minio settings (credentials checked)."""
        port = free_port()
        self.s3_url = f"http://127.0.0.1:{port}"
        self.s3_data.mkdir(exist_ok=True)
        self.s3 = self.start_s3(port)
        self.processes.append(self.s3)
        self.replacements["http://minio:9000"] = self.s3_url

    @property
    def s3_data(self) -> Path:
        """The minio-data volume, natively."""
        return self.root / "s3-data"

    def crash_and_restart_s3(self) -> None:
        """SIGKILL the S3 stand-in, as a crash would, and start it again on its port and data."""
        assert self.s3 is not None
        os.killpg(self.s3.pid, 9)
        self.s3.wait(timeout=30)
        self.processes.remove(self.s3)
        self.s3 = self.start_s3(int(self.s3_url.rsplit(":", 1)[1]))
        self.processes.append(self.s3)

    def start_s3(self, port: int) -> subprocess.Popen:
        """The S3 stand-in on `port`, its data directory in place of the container's /data."""
        minio = self.compose["services"]["minio"]
        command = [str(self.s3_data) if arg == "/data" else arg for arg in minio["command"]]
        process = subprocess.Popen([sys.executable, str(S3_STANDIN), *command, "--address", f"127.0.0.1:{port}"],
                                   env={**os.environ, **native_env(minio, self.replacements)},
                                   stdout=open(self.root / "s3.log", "a"), stderr=subprocess.STDOUT,
                                   start_new_session=True)
        wait_until_healthy(f"http://127.0.0.1:{port}/minio/health/ready", 60, what="the S3 stand-in",
                           exited=process.poll)
        return process

    def _start_postgres(self) -> None:
        self.postgres = NativePostgres(self.root / "postgres", self.secrets / "postgres-password")
        self.postgres.start()
        self.replacements["@postgres:5432/"] = f"@127.0.0.1:{self.postgres.port}/"

    def job_env(self, spec: dict[str, Any], replacements: Mapping[str, str]) -> dict[str, str]:
        env = native_env(spec, replacements)
        if env.get("PGHOST") == "postgres" and self.postgres is not None:
            env.update(PGHOST="127.0.0.1", PGPORT=str(self.postgres.port))
        return env

    def run_job(self, service: str, *args: str, compose: dict[str, Any] | None = None,
                replacements: Mapping[str, str] | None = None, cwd: Path | None = None,
                command: list[str] | None = None) -> subprocess.CompletedProcess:
        """A one-shot service's command (plus `args`), or another `command` in that service (as
        `docker compose run SERVICE COMMAND` does), through the entrypoint, with its environment."""
        # The working directory stands for the repository, mounted at /project.
        replacements = {"/opt/stack/scripts": str(SCRIPTS), "/project": str(cwd or REPO),
                        **(replacements or self.replacements)}
        spec = (compose or self.compose)["services"][service]
        command = [replace_all(arg, replacements) for arg in (command or spec["command"])] + list(args)
        job = run_in_entrypoint(command, self.job_env(spec, replacements), cwd=cwd or REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        stdout, stderr = job.communicate(timeout=300)
        return subprocess.CompletedProcess(command, job.returncode, stdout, stderr)

    @staticmethod
    def check_job(service: str, result: subprocess.CompletedProcess) -> None:
        if result.returncode != 0:
            raise RuntimeError(f"the {service} job failed ({result.returncode}): {result.stderr}")

    def start_mlflow(self, compose: dict[str, Any], replacements: Mapping[str, str], port: int, log_name: str,
                     extra_env: Mapping[str, str] | None = None) -> tuple[subprocess.Popen, str]:
        """A compose file's mlflow service, natively: its command, environment and entrypoint."""
        mlflow = compose["services"]["mlflow"]
        command = [replace_all(arg, {"/opt/stack/scripts": str(SCRIPTS)}).replace("--host=0.0.0.0", "--host=127.0.0.1")
                   .replace("--port=5000", f"--port={port}") for arg in mlflow["command"]]
        server = run_in_entrypoint(command, {**native_env(mlflow, replacements), **(extra_env or {})},
                                   stdout=open(self.root / log_name, "w"), stderr=subprocess.STDOUT,
                                   start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_healthy(url + "/health", START_TIMEOUT_S, exited=server.poll)
        except BaseException:
            stop_processes([server])
            raise
        return server, url

    def secret(self, name: str) -> str:
        return (self.secrets / name).read_text().strip()

    @property
    def bucket(self) -> str:
        return self.compose["services"]["bucket"]["environment"]["MLFLOW_BUCKET"]

    def service_env(self, name: str) -> dict[str, str]:
        return native_env(self.compose["services"][name], self.replacements)

    def database_uri(self, role: str, password: str, database: str) -> str:
        assert self.postgres is not None
        return f"postgresql://{role}:{password}@127.0.0.1:{self.postgres.port}/{database}"

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """The rows of `sql` in MLflow's tracking database, as its own role reads them."""
        uri = self.database_uri("mlflow", self.secret("mlflow-db-password"), "mlflow")
        with closing(psycopg2.connect(uri)) as connection, connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()

    def stop(self) -> None:
        stop_processes(self.processes)
        self.processes.clear()
        if self.postgres is not None:
            try:
                self.postgres.stop()
            except subprocess.CalledProcessError:
                pass
        if os.environ.get("KEEP_TEST_DIRS") != "1":
            shutil.rmtree(self.root, ignore_errors=True)
