"""MLflow's client as a notebook runs it: the tracking URI (and, in team mode, an account and the CA) from
the environment, no other MLflow setting. Writes a text artifact into a new run, reads it back, and prints
one JSON line: what the server advertises for presigned transfers, and the text read back.

Run with a timeout: a client sent to presigned URLs that name the store inside the stack retries for many
minutes instead of failing.
"""

from __future__ import annotations

import json
import uuid

TEXT = "a notebook's artifact ✓"


def main() -> None:
    import mlflow
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.server_info import (SERVER_INFO_MULTIPART_DOWNLOADS_ENABLED,
                                          SERVER_INFO_MULTIPART_UPLOADS_ENABLED, fetch_server_info)

    info = fetch_server_info(get_default_host_creds(mlflow.get_tracking_uri())).data
    with mlflow.start_run(experiment_id=mlflow.create_experiment(f"notebook-{uuid.uuid4().hex[:6]}")) as run:
        mlflow.log_text(TEXT, "notes/kept.txt")
    read_back = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/notes/kept.txt")
    print(json.dumps({"presigned_uploads": info.get(SERVER_INFO_MULTIPART_UPLOADS_ENABLED),
                      "presigned_downloads": info.get(SERVER_INFO_MULTIPART_DOWNLOADS_ENABLED),
                      "read_back": read_back}))


if __name__ == "__main__":
    main()
