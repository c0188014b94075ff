#!/usr/bin/env python3
"""The stores' facts as JSON, for make status and make doctor, which run it inside the mlflow container (it holds
the stores' credentials): each database's schema against the image's, traces per experiment, the judges started,
whether the bucket answers, and what redaction did since the server started. The stores themselves are
lib/store.py's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from lib import redact
from lib.errors import StackError, run_command
from lib.ingest import read_tallies, tally_directory
from lib.store import (Bucket, artifact_bucket, databases, image_head, one_line_errors, schema_revision,
                       started_judges, traces_per_experiment)


def bucket_facts(bucket: Bucket) -> dict:
    """The bucket's name, and the object store's answer when asked for it (None: it is there)."""
    try:
        with one_line_errors(f"bucket {bucket.name}"):
            bucket.client().head_bucket(Bucket=bucket.name)
    except StackError as exc:
        return {"name": bucket.name, "error": str(exc)}
    return {"name": bucket.name, "error": None}


def redaction_facts() -> dict:
    """REDACTION as this server runs with it, and what redaction did since it started (every worker's tally)."""
    mode = (os.environ.get(redact.OFF_SETTING) or "on").strip().lower()
    return {"mode": mode, **read_tallies(tally_directory()).as_dict()}


def facts() -> dict:
    """What `make status` and `make doctor` read of the stores: each database's schema against the image's,
    traces per (active) experiment, the judges started on them, and whether the bucket answers."""
    found = {}
    for database in databases():
        entry = {"name": database.name, "revision": schema_revision(database), "image_revision": image_head(database)}
        if database.kind == "tracking":
            entry["experiments"] = [{"id": id_, "name": name, "traces": traces, "newest_ms": newest}
                                    for id_, name, traces, newest in traces_per_experiment(database)]
            entry["started_judges"] = started_judges(database)
        found[database.kind] = entry
    return {"databases": found, "bucket": bucket_facts(artifact_bucket()), "redaction": redaction_facts()}


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description="Print, as JSON, the schema revisions and traces per experiment of "
                                        "MLflow's databases and whether the bucket answers (make status and "
                                        "make doctor run this in the mlflow container).",
                            ).parse_args(argv)
    return run_command("store", lambda: json.dumps(facts()))


if __name__ == "__main__":
    sys.exit(main())
