"""What an installation of MLflow holds, read by the Python it runs in (.venv's, or the image's: the file is
sent to that Python on stdin, never copied into the image).

Prints JSON: the distributions whose RECORD lists files of the `mlflow/` package, with their versions; the
files of that package on disk that no RECORD lists with the same hash; and `pip check`'s lines. MLflow
3.18.0 is installed without mlflow-tracing (mlflow/overrides.txt), so this is how a test shows that every
file under mlflow/ is 3.18.0's and that nothing else is missing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path


def recorded_hashes() -> tuple[dict[Path, set[str]], dict[str, str]]:
    """Each file of the mlflow/ package -> the hashes RECORDs give it; and the distributions that list any."""
    hashes: dict[Path, set[str]] = {}
    owners: dict[str, str] = {}
    for dist in metadata.distributions():
        for file in dist.files or []:
            if file.parts[0] == "mlflow" and file.hash:
                hashes.setdefault(Path(dist.locate_file(file)).resolve(), set()).add(file.hash.value)
                owners[dist.metadata["Name"]] = dist.version
    return hashes, owners


def unrecorded(package: Path, hashes: dict[Path, set[str]]) -> list[str]:
    """Files under the package that no RECORD lists with their content's hash (bytecode caches aside)."""
    found = []
    for path in sorted(package.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        digest = base64.urlsafe_b64encode(hashlib.sha256(path.read_bytes()).digest()).rstrip(b"=").decode()
        if digest not in hashes.get(path.resolve(), set()):
            found.append(str(path.relative_to(package.parent)))
    return found


def main() -> None:
    import mlflow  # noqa: PLC0415 - imported here: the report says what this Python has

    package = Path(mlflow.__file__).parent
    hashes, owners = recorded_hashes()
    check = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    print(json.dumps({"version": mlflow.__version__, "owners": owners,
                      "unrecorded": unrecorded(package, hashes), "pip_check": check.stdout.splitlines()}))


if __name__ == "__main__":
    main()
