"""goose itself: the Linux build npm publishes, downloaded once with npm, checked against its pinned digest at every use.

The only goose binary this machine's registries offer (crates.io and GitHub
are out of reach, so no newer release can be built). It is goose 1.37.0,
whose exporter panics (aaif-goose/goose issue #9494): the tests use it to show
that trap and the doctor's line for it, never as a goose that sends traces.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "@aaif/goose-binary-linux-x64@0.20.2"  # goose 1.37.0
INTEGRITY = "sha512-+TgB2+MKj18kbw5PBnDMAWvuy8ZijNxXQL4qRBeMebcx07W3dIf6zoy9xD5mSyce61ugG9vsLt9a+3Pm8qZaRw=="
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "goose-mlflow-tests"


def integrity(data: bytes) -> str:
    """npm's Subresource Integrity string of a package tarball."""
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def goose_binary() -> Path:
    """The path of the `goose` executable of PACKAGE: the tarball is downloaded by `npm pack` on first use and
    checked against INTEGRITY on every use, and the executable extracted from it afresh."""
    CACHE.mkdir(parents=True, exist_ok=True)
    tarball = CACHE / (PACKAGE.lstrip("@").replace("/", "-").replace("@", "-") + ".tgz")
    if not tarball.is_file():
        with tempfile.TemporaryDirectory(dir=CACHE) as download:
            subprocess.run(["npm", "pack", PACKAGE, "--pack-destination", download], check=True,
                           capture_output=True, timeout=900)
            next(Path(download).glob("*.tgz")).replace(tarball)
    found = integrity(tarball.read_bytes())
    if found != INTEGRITY:
        raise AssertionError(f"{tarball} ({PACKAGE}) has digest {found}, not the pinned {INTEGRITY}: delete it "
                             "to download it again")
    target = CACHE / "bin" / "goose"
    target.parent.mkdir(exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.partial")  # two test workers may extract it at once
    with tarfile.open(tarball) as tar:
        executable = tar.extractfile("package/bin/goose")
        assert executable is not None, f"{PACKAGE} holds no package/bin/goose"
        partial.write_bytes(executable.read())
    partial.chmod(0o755)
    partial.replace(target)
    return target
