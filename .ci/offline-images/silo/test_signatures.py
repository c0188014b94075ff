"""Checks s3-standin's signature checks against the worked examples in AWS's
S3 documentation ("Signature Calculations for the Authorization Header",
"Query String Authentication", "Transferring Payload in Multiple Chunks").

Run: python3 test_signatures.py   (needs werkzeug; the silo stand-in image has it:
  docker run --rm --entrypoint /opt/s3-standin/bin/python \\
      pgsty/silo:RELEASE.2026-09-03T13-18-01Z /usr/local/share/s3-standin/test_signatures.py)
"""

import datetime as dt
import hashlib
import hmac
import io
import os
import unittest
import importlib.util
from importlib.machinery import SourceFileLoader

HERE = os.path.dirname(os.path.abspath(__file__))
STANDIN = next(p for p in (os.path.join(HERE, "s3-standin"), "/usr/local/bin/s3-standin")
               if os.path.exists(p))
_spec = importlib.util.spec_from_loader("s3_standin", SourceFileLoader("s3_standin", STANDIN))
s3 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(s3)

ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
EXAMPLE_TIME = dt.datetime(2013, 5, 24, 0, 0, 5, tzinfo=dt.timezone.utc)


def verifier(secret=SECRET_KEY, access=ACCESS_KEY, now=EXAMPLE_TIME):
    return s3.SignatureVerifier(access, secret, clock=lambda: now)


def environ(method, target, headers, body=b""):
    env = {
        "REQUEST_METHOD": method,
        "RAW_URI": target,
        "PATH_INFO": target.partition("?")[0],
        "QUERY_STRING": target.partition("?")[2],
        "wsgi.input": io.BytesIO(body),
    }
    for name, value in headers.items():
        key = name.upper().replace("-", "_")
        env[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key] = value
    return env


def get_object_example():
    return environ("GET", "/test.txt", {
        "Host": "examplebucket.s3.amazonaws.com",
        "Range": "bytes=0-9",
        "x-amz-content-sha256": s3.EMPTY_SHA256,
        "x-amz-date": "20130524T000000Z",
        "Authorization": "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/"
                         "s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
                         "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
    })


PRESIGNED = ("/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256"
             "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
             "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
             "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404")

SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
CHUNK_SIGNATURES = [
    "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
    "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
    "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
]


def streaming_body(signatures=CHUNK_SIGNATURES, sizes=(65536, 1024, 0)):
    out = b""
    for size, signature in zip(sizes, signatures):
        out += f"{size:x};chunk-signature={signature}\r\n".encode() + b"a" * size + b"\r\n"
    return out


def streaming_example(body=None):
    body = streaming_body() if body is None else body
    return environ("PUT", "/examplebucket/chunkObject.txt", {
        "Host": "s3.amazonaws.com",
        "x-amz-date": "20130524T000000Z",
        "x-amz-storage-class": "REDUCED_REDUNDANCY",
        "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": "66560",
        "Content-Length": str(len(body)),
        "Authorization": "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/"
                         "aws4_request,SignedHeaders=content-encoding;content-length;host;"
                         "x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;"
                         f"x-amz-storage-class,Signature={SEED}",
    }, body)


class HeaderSignature(unittest.TestCase):
    def test_aws_example_verifies(self):
        ctx = verifier().verify(get_object_example())
        self.assertEqual(ctx.scope, "20130524/us-east-1/s3/aws4_request")

    def test_wrong_secret_is_signature_mismatch(self):
        with self.assertRaises(s3.S3Error) as caught:
            verifier(secret="not-the-secret-key").verify(get_object_example())
        self.assertEqual((caught.exception.status, caught.exception.code),
                         (403, "SignatureDoesNotMatch"))

    def test_wrong_access_key(self):
        with self.assertRaises(s3.S3Error) as caught:
            verifier(access="someoneelse").verify(get_object_example())
        self.assertEqual((caught.exception.status, caught.exception.code),
                         (403, "InvalidAccessKeyId"))

    def test_tampered_header_fails(self):
        env = get_object_example()
        env["HTTP_RANGE"] = "bytes=0-99"
        with self.assertRaises(s3.S3Error) as caught:
            verifier().verify(env)
        self.assertEqual(caught.exception.code, "SignatureDoesNotMatch")

    def test_clock_skew(self):
        with self.assertRaises(s3.S3Error) as caught:
            verifier(now=EXAMPLE_TIME + dt.timedelta(hours=1)).verify(get_object_example())
        self.assertEqual(caught.exception.code, "RequestTimeTooSkewed")

    def test_anonymous_denied(self):
        env = get_object_example()
        del env["HTTP_AUTHORIZATION"]
        with self.assertRaises(s3.S3Error) as caught:
            verifier().verify(env)
        self.assertEqual((caught.exception.status, caught.exception.code), (403, "AccessDenied"))


class PresignedUrl(unittest.TestCase):
    def env(self):
        return environ("GET", PRESIGNED, {"Host": "examplebucket.s3.amazonaws.com"})

    def test_aws_example_verifies(self):
        verifier().verify(self.env())

    def test_wrong_secret(self):
        with self.assertRaises(s3.S3Error) as caught:
            verifier(secret="not-the-secret-key").verify(self.env())
        self.assertEqual(caught.exception.code, "SignatureDoesNotMatch")

    def test_expired(self):
        with self.assertRaises(s3.S3Error) as caught:
            verifier(now=EXAMPLE_TIME + dt.timedelta(days=2)).verify(self.env())
        self.assertEqual((caught.exception.code, caught.exception.message),
                         ("AccessDenied", "Request has expired"))


class StreamingSignedPayload(unittest.TestCase):
    def test_aws_example_verifies(self):
        env = streaming_example()
        ctx = verifier().verify(env)
        s3.verify_payload(env, ctx)
        self.assertEqual(env["wsgi.input"].read(), streaming_body())

    def test_bad_chunk_signature(self):
        signatures = list(CHUNK_SIGNATURES)
        signatures[1] = "0" * 64
        env = streaming_example(streaming_body(signatures))
        ctx = verifier().verify(env)
        with self.assertRaises(s3.S3Error) as caught:
            s3.verify_payload(env, ctx)
        self.assertEqual(caught.exception.code, "SignatureDoesNotMatch")

    def test_altered_chunk_data(self):
        body = streaming_body().replace(b"aaaa\r\n", b"aaab\r\n", 1)
        env = streaming_example(body)
        ctx = verifier().verify(env)
        with self.assertRaises(s3.S3Error) as caught:
            s3.verify_payload(env, ctx)
        self.assertEqual(caught.exception.code, "SignatureDoesNotMatch")


class SignedPayloadHash(unittest.TestCase):
    def env(self, body, claimed):
        amz_date = "20130524T000000Z"
        headers = {"Host": "s3.amazonaws.com", "x-amz-date": amz_date,
                   "x-amz-content-sha256": claimed, "Content-Length": str(len(body))}
        canonical = "\n".join(["PUT", "/b/k", "", f"host:s3.amazonaws.com\n"
                               f"x-amz-content-sha256:{claimed}\nx-amz-date:{amz_date}\n",
                               "host;x-amz-content-sha256;x-amz-date", claimed])
        scope = "20130524/us-east-1/s3/aws4_request"
        string_to_sign = "\n".join([s3.ALGORITHM, amz_date, scope,
                                    hashlib.sha256(canonical.encode()).hexdigest()])
        key = s3.signing_key(SECRET_KEY, "20130524", "us-east-1", "s3")
        signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
        headers["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{scope}, "
                                    "SignedHeaders=host;x-amz-content-sha256;x-amz-date, "
                                    f"Signature={signature}")
        return environ("PUT", "/b/k", headers, body)

    def test_matching_body(self):
        env = self.env(b"hello", hashlib.sha256(b"hello").hexdigest())
        s3.verify_payload(env, verifier().verify(env))

    def test_body_differs_from_signed_hash(self):
        env = self.env(b"hellO", hashlib.sha256(b"hello").hexdigest())
        ctx = verifier().verify(env)
        with self.assertRaises(s3.S3Error) as caught:
            s3.verify_payload(env, ctx)
        self.assertEqual(caught.exception.code, "XAmzContentSHA256Mismatch")


class SignatureV2(unittest.TestCase):
    # "Authentication examples" of the S3 REST authentication (SigV2) documentation,
    # sent path-style: the string to sign is the same
    WHEN = dt.datetime(2007, 3, 27, 19, 36, 50, tzinfo=dt.timezone.utc)

    def env(self, signature="bWq2s1WEIj+Ydj0vQ697zp+IXMU="):
        return environ("GET", "/johnsmith/photos/puppy.jpg", {
            "Host": "s3.amazonaws.com",
            "Date": "Tue, 27 Mar 2007 19:36:42 +0000",
            "Authorization": f"AWS AKIAIOSFODNN7EXAMPLE:{signature}",
        })

    def test_aws_example_verifies(self):
        verifier(now=self.WHEN).verify(self.env())

    def test_wrong_secret(self):
        with self.assertRaises(s3.S3Error) as caught:
            verifier(secret="not-the-secret-key", now=self.WHEN).verify(self.env())
        self.assertEqual(caught.exception.code, "SignatureDoesNotMatch")

    def test_wrong_access_key(self):
        with self.assertRaises(s3.S3Error) as caught:
            verifier(access="someoneelse", now=self.WHEN).verify(self.env())
        self.assertEqual(caught.exception.code, "InvalidAccessKeyId")


class UnsignedTrailer(unittest.TestCase):
    def env(self, checksum):
        body = (b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:" + checksum.encode()
                + b"\r\n\r\n")
        return environ("PUT", "/b/k", {"Content-Length": str(len(body)),
                                       "x-amz-decoded-content-length": "5"}, body)

    def ctx(self):
        return s3.SignatureContext(None, None, None, None, s3.STREAMING_UNSIGNED_TRAILER)

    def test_right_checksum(self):
        import base64
        import zlib
        good = base64.b64encode(zlib.crc32(b"hello").to_bytes(4, "big")).decode()
        s3.verify_payload(self.env(good), self.ctx())

    def test_wrong_checksum(self):
        with self.assertRaises(s3.S3Error) as caught:
            s3.verify_payload(self.env("AAAAAA=="), self.ctx())
        self.assertEqual((caught.exception.status, caught.exception.code), (400, "BadDigest"))


class Checksums(unittest.TestCase):
    # check values of "123456789" from the CRC catalogue
    def test_crc32c(self):
        self.assertEqual(s3.CHECKSUMS["x-amz-checksum-crc32c"](b"123456789").hex(), "e3069283")

    def test_crc64nvme(self):
        self.assertEqual(s3.CHECKSUMS["x-amz-checksum-crc64nvme"](b"123456789").hex(),
                         "ae8b14860a799888")

    def test_crc32(self):
        self.assertEqual(s3.CHECKSUMS["x-amz-checksum-crc32"](b"123456789").hex(), "cbf43926")


class Configuration(unittest.TestCase):
    def setUp(self):
        self.saved = dict(os.environ)
        for name in list(os.environ):
            if name.startswith("MINIO_"):
                del os.environ[name]

    def tearDown(self):
        os.environ.clear()
        os.environ.update(self.saved)

    def test_short_password_refused(self):
        os.environ.update(MINIO_ROOT_USER="admin", MINIO_ROOT_PASSWORD="short")
        with self.assertRaises(s3.ConfigError):
            s3.load_credentials()

    def test_missing_refused(self):
        with self.assertRaises(s3.ConfigError):
            s3.load_credentials()

    def test_file_variants(self):
        import tempfile
        with tempfile.NamedTemporaryFile("w", delete=False) as handle:
            handle.write("longenoughsecret\n")
        os.environ.update(MINIO_ROOT_USER="admin", MINIO_ROOT_PASSWORD_FILE=handle.name)
        self.assertEqual(s3.load_credentials(), ("admin", "longenoughsecret"))
        os.unlink(handle.name)

    def test_server_command_line(self):
        args = s3.parse_args(["server", "/data", "--console-address", ":9001"])
        self.assertEqual((args.command, args.dirs, args.address), ("server", ["/data"], ":9000"))
        self.assertEqual(s3.parse_address(args.address), ("0.0.0.0", 9000))


if __name__ == "__main__":
    unittest.main(verbosity=2)
