#!/usr/bin/env python3
"""Create MLflow's artifact bucket if it does not exist (idempotent).

Runs as the one-shot `bucket` service between MinIO becoming healthy and
MLflow starting; `minio/mc` can no longer be pulled, and the MLflow image
already carries boto3. Credentials come from AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY, which the image's entrypoint reads from *_FILE.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from botocore.exceptions import BotoCoreError, ClientError

from lib.errors import StackError, run_command
from lib.store import one_line_errors, s3_client


def ensure_bucket(endpoint: str, bucket: str, retries: int) -> str:
    """'created' or 'exists'."""
    client = s3_client(endpoint)
    for attempt in range(retries):
        try:
            client.head_bucket(Bucket=bucket)
            return "exists"
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
                raise
            try:
                client.create_bucket(Bucket=bucket)
                return "created"
            except ClientError as create_exc:
                if create_exc.response.get("Error", {}).get("Code") == "BucketAlreadyOwnedByYou":
                    return "exists"
                raise
        except BotoCoreError:
            if attempt == retries - 1:
                raise
            time.sleep(1)
    raise StackError(f"no attempt to reach {endpoint} was made; give --retries 1 or more")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Create the S3 bucket for MLflow's artifacts if missing.")
    parser.add_argument("--endpoint", default=os.environ.get("MLFLOW_S3_ENDPOINT_URL"),
                        help="S3 endpoint URL (default: $MLFLOW_S3_ENDPOINT_URL)")
    parser.add_argument("--bucket", default=os.environ.get("MLFLOW_BUCKET"), help="bucket name (default: $MLFLOW_BUCKET)")
    parser.add_argument("--retries", type=int, default=30, help="connection attempts, 1 s apart (default: %(default)s)")
    args = parser.parse_args(argv)
    if not args.endpoint or not args.bucket:
        parser.error("give --endpoint and --bucket (or MLFLOW_S3_ENDPOINT_URL and MLFLOW_BUCKET)")
    return args


def run(args: argparse.Namespace) -> None:
    with one_line_errors(f"bucket {args.bucket} at {args.endpoint}"):
        state = ensure_bucket(args.endpoint, args.bucket, args.retries)
    print(f"bucket: bucket {args.bucket} {state}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_command("bucket", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
