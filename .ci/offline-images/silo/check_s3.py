"""End-to-end check of a running silo stand-in with boto3 (path style, us-east-1).

usage: python3 check_s3.py ENDPOINT ACCESS_KEY SECRET_KEY
   e.g. python3 check_s3.py http://127.0.0.1:19000 goose-admin 'long-secret-123'
Needs boto3 >= 1.36 (the stand-in image ships one: run it with
/opt/s3-standin/bin/python inside the image, on the host network).
"""

import hashlib
import io
import os
import sys
import urllib.error
import urllib.request

import boto3
import botocore
from botocore.client import Config
from botocore.exceptions import ClientError

ENDPOINT, ACCESS_KEY, SECRET_KEY = sys.argv[1:4]
RESULTS = []


def client(access=ACCESS_KEY, secret=SECRET_KEY, **config):
    return boto3.client(
        "s3", endpoint_url=ENDPOINT, region_name="us-east-1",
        aws_access_key_id=access, aws_secret_access_key=secret,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, **config),
    )


def check(name):
    def wrap(func):
        try:
            func()
        except Exception as exc:  # noqa: BLE001 - report every failure
            RESULTS.append(False)
            print(f"FAIL {name}: {type(exc).__name__}: {exc}")
        else:
            RESULTS.append(True)
            print(f"ok   {name}")
        return func
    return wrap


def http_status(url, method="GET"):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method)) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def expect_error(call, status, code):
    try:
        call()
    except ClientError as exc:
        got = (exc.response["ResponseMetadata"]["HTTPStatusCode"], exc.response["Error"]["Code"])
        assert got == (status, code), f"expected {(status, code)}, got {got}"
    else:
        raise AssertionError("call succeeded with bad credentials")


s3 = client()
BUCKET = "goose-check"
sent_headers = {}


def remember_headers(request, **_):
    sent_headers.clear()
    sent_headers.update(
        {k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()})


s3.meta.events.register("before-send.s3.PutObject", remember_headers)
print(f"boto3 {boto3.__version__}, botocore {botocore.__version__}, endpoint {ENDPOINT}")


@check("health endpoints answer 200 without credentials")
def _():
    for path in ("/minio/health/live", "/minio/health/ready"):
        for method in ("GET", "HEAD"):
            status, _ = http_status(ENDPOINT + path, method)
            assert status == 200, f"{method} {path}: {status}"


@check("anonymous request is refused with 403 AccessDenied")
def _():
    status, body = http_status(ENDPOINT + "/")
    assert status == 403 and b"<Code>AccessDenied</Code>" in body, (status, body)


@check("create_bucket / list_buckets")
def _():
    s3.create_bucket(Bucket=BUCKET)
    assert BUCKET in [b["Name"] for b in s3.list_buckets()["Buckets"]]


PAYLOAD = os.urandom(300_000) + b"end"


def show_sent():
    print(f"     sent x-amz-content-sha256: {sent_headers.get('x-amz-content-sha256')}, "
          f"content-encoding: {sent_headers.get('content-encoding')}, "
          f"x-amz-trailer: {sent_headers.get('x-amz-trailer')}, "
          f"x-amz-checksum-crc32: {sent_headers.get('x-amz-checksum-crc32')}")


@check("put_object with boto3's defaults over http (signed SHA-256, CRC32 header)")
def _():
    s3.put_object(Bucket=BUCKET, Key="default/blob.bin", Body=PAYLOAD)
    show_sent()
    body = s3.get_object(Bucket=BUCKET, Key="default/blob.bin", ChecksumMode="ENABLED")["Body"].read()
    assert body == PAYLOAD, f"{len(body)} bytes back, sha256 {hashlib.sha256(body).hexdigest()}"


def force_trailer(params, **_):
    """What botocore does over https: aws-chunked body, unsigned, CRC32 trailer."""
    algorithm = params["context"].get("checksum", {}).get("request_algorithm")
    if isinstance(algorithm, dict):
        algorithm["in"] = "trailer"


@check("put_object as boto3 sends it over https (STREAMING-UNSIGNED-PAYLOAD-TRAILER)")
def _():
    s3.meta.events.register("before-call.s3.PutObject", force_trailer)
    try:
        s3.put_object(Bucket=BUCKET, Key="trailer/blob.bin", Body=PAYLOAD)
    finally:
        s3.meta.events.unregister("before-call.s3.PutObject", force_trailer)
    show_sent()
    assert sent_headers.get("x-amz-content-sha256") == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    assert sent_headers.get("content-encoding") == "aws-chunked"
    got = s3.get_object(Bucket=BUCKET, Key="trailer/blob.bin", ChecksumMode="ENABLED")
    body = got["Body"].read()
    assert body == PAYLOAD, f"{len(body)} bytes back, sha256 {hashlib.sha256(body).hexdigest()}"
    assert got["ContentLength"] == len(PAYLOAD)
    assert "aws-chunked" not in (got.get("ContentEncoding") or ""), got.get("ContentEncoding")


def send_chunked(key, crc32_b64):
    """A hand-made aws-chunked upload with a trailing CRC32, signed by botocore."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    body = b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:" + crc32_b64.encode() + b"\r\n\r\n"
    request = AWSRequest("PUT", f"{ENDPOINT}/{BUCKET}/{key}", data=body, headers={
        "Content-Type": "application/octet-stream",
        "Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": "5",
        "x-amz-trailer": "x-amz-checksum-crc32"})
    request.context["checksum"] = {"request_algorithm": {
        "in": "trailer", "algorithm": "crc32", "name": "x-amz-checksum-crc32"}}
    S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", "us-east-1").add_auth(request)
    prepared = request.prepare()
    assert prepared.headers["X-Amz-Content-SHA256"] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    req = urllib.request.Request(prepared.url, data=prepared.body, method="PUT",
                                 headers=dict(prepared.headers.items()))
    try:
        with urllib.request.urlopen(req) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@check("aws-chunked upload: right trailing CRC32 stored, wrong one 400 BadDigest")
def _():
    import base64
    import zlib

    good = base64.b64encode(zlib.crc32(b"hello").to_bytes(4, "big")).decode()
    status, body = send_chunked("chunked-good.txt", good)
    assert status == 200, (status, body)
    assert s3.get_object(Bucket=BUCKET, Key="chunked-good.txt")["Body"].read() == b"hello"
    status, body = send_chunked("chunked-bad.txt", "AAAAAA==")
    assert status == 400 and b"<Code>BadDigest</Code>" in body, (status, body)
    s3.delete_object(Bucket=BUCKET, Key="chunked-good.txt")


@check("put_object signing the SHA-256 of the body (checksums only when required)")
def _():
    plain = client(request_checksum_calculation="when_required")
    plain.put_object(Bucket=BUCKET, Key="plain.txt", Body=b"hello plain\n")
    assert plain.get_object(Bucket=BUCKET, Key="plain.txt")["Body"].read() == b"hello plain\n"


ODD_KEY = "dir/sub dir/ü+%&=!'()*~;,$@.txt"


@check("odd characters in keys, prefixes and query strings")
def _():
    s3.put_object(Bucket=BUCKET, Key=ODD_KEY, Body=b"odd")
    assert s3.get_object(Bucket=BUCKET, Key=ODD_KEY)["Body"].read() == b"odd"
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="dir/sub dir/", Delimiter="/")
    assert [o["Key"] for o in listed.get("Contents", [])] == [ODD_KEY], listed.get("Contents")


@check("multipart upload (12 MiB upload_fileobj) reads back exactly")
def _():
    big = os.urandom(12 * 1024 * 1024)
    s3.upload_fileobj(io.BytesIO(big), BUCKET, "big.bin")
    out = io.BytesIO()
    s3.download_fileobj(BUCKET, "big.bin", out)
    assert out.getvalue() == big


@check("presigned GET URLs (SigV4, and boto3's default SigV2); tampered ones refused")
def _():
    for signer in (client(signature_version="s3v4"), s3):
        url = signer.generate_presigned_url(
            "get_object", Params={"Bucket": BUCKET, "Key": "plain.txt"}, ExpiresIn=300)
        status, body = http_status(url)
        assert (status, body) == (200, b"hello plain\n"), (url, status, body)
        status, body = http_status(url.replace("plain.txt", "default/blob.bin"))
        assert status == 403 and b"SignatureDoesNotMatch" in body, (status, body)


@check("SigV2 header signatures (signature_version='s3')")
def _():
    v2 = client(signature_version="s3")
    v2.put_object(Bucket=BUCKET, Key="v2.txt", Body=b"v2 body")
    assert v2.get_object(Bucket=BUCKET, Key="v2.txt")["Body"].read() == b"v2 body"
    v2.delete_object(Bucket=BUCKET, Key="v2.txt")
    bad = client(signature_version="s3", secret="wrong-" + SECRET_KEY)
    expect_error(lambda: bad.list_buckets(), 403, "SignatureDoesNotMatch")


@check("wrong secret key: 403 SignatureDoesNotMatch")
def _():
    bad = client(secret="wrong-" + SECRET_KEY)
    expect_error(lambda: bad.list_buckets(), 403, "SignatureDoesNotMatch")
    expect_error(lambda: bad.put_object(Bucket=BUCKET, Key="x", Body=b"x"), 403, "SignatureDoesNotMatch")
    expect_error(lambda: bad.get_object(Bucket=BUCKET, Key="plain.txt"), 403, "SignatureDoesNotMatch")
    expect_error(lambda: bad.head_object(Bucket=BUCKET, Key="plain.txt"), 403, "403")


@check("wrong access key: 403 InvalidAccessKeyId")
def _():
    bad = client(access="not-" + ACCESS_KEY)
    expect_error(lambda: bad.list_buckets(), 403, "InvalidAccessKeyId")
    expect_error(lambda: bad.create_bucket(Bucket="other"), 403, "InvalidAccessKeyId")


@check("nothing was written with bad credentials; cleanup")
def _():
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"])
    assert keys == sorted(["default/blob.bin", "trailer/blob.bin", "plain.txt", ODD_KEY,
                          "big.bin"]), keys
    for key in keys:
        s3.delete_object(Bucket=BUCKET, Key=key)
    s3.delete_bucket(Bucket=BUCKET)


passed = sum(RESULTS)
print(f"s3: {passed} passed, {len(RESULTS) - passed} failed")
sys.exit(0 if all(RESULTS) else 1)
