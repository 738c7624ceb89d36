"""Checksum-verified downloads of model files: the only network code, run only by the explicit download rules.

A download lands under a temporary name and is renamed to its final path only after its digest matched, so a
half-fetched or wrong file is never taken for the model (``atomic_path``).
"""
from __future__ import annotations

import hashlib
import logging
import shutil
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from gt_core.errors import InputError
from gt_core.io.atomic import atomic_path


@dataclass(frozen=True)
class ModelFile:
    """One downloadable model file: where it comes from and the digest it must have."""

    name: str  # file name on disk
    url: str  # the file itself, or a zip holding it (``zip_member``)
    algo: str  # hashlib algorithm of ``digest``, or "git-blob-sha1" (the SHA-1 git names the file's blob by)
    digest: str  # hex digest, or its leading digits (torchvision's 8-digit file-name convention)
    zip_member: str | None = None


GIT_BLOB_SHA1 = "git-blob-sha1"


def file_digest(path: str | Path, algo: str) -> str:
    """Hex digest of a file; ``git-blob-sha1`` is ``sha1(b"blob <size>\\0" + content)``, what ``git ls-tree``
    shows for a file in a repository, so a file committed to GitHub can be pinned without downloading it first."""
    if algo == GIT_BLOB_SHA1:
        h = hashlib.sha1(b"blob %d\0" % Path(path).stat().st_size)
    else:
        h = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def matches(path: str | Path, model: ModelFile) -> bool:
    """True if ``path`` is a file whose digest starts with the model's expected digest."""
    return Path(path).is_file() and file_digest(path, model.algo).startswith(model.digest)


def download_model(model: ModelFile, out: str | Path) -> Path:
    """Fetch ``model`` to ``out`` (unzipping its member if it is zipped) and verify its digest."""
    out = Path(out)
    with atomic_path(out) as tmp:
        fetched = tmp.with_name(tmp.name + ".download")
        try:
            try:
                urllib.request.urlretrieve(model.url, fetched)
            except OSError as err:
                by_hand = f"unzip it and put {model.zip_member} at {out}" if model.zip_member else f"save it as {out}"
                raise InputError(model.url, f"download failed ({err})", "run this rule on a machine that is "
                                 f"online, or fetch the URL elsewhere, {by_hand}") from err
            if model.zip_member is None:
                fetched.replace(tmp)
            else:
                try:
                    with zipfile.ZipFile(fetched) as zf, zf.open(model.zip_member) as src, open(tmp, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
                except (zipfile.BadZipFile, KeyError) as err:
                    raise InputError(model.url, f"not a zip holding {model.zip_member} ({err})",
                                     "retry; if it persists the file on the server changed") from err
        finally:
            fetched.unlink(missing_ok=True)
        if not matches(tmp, model):
            raise InputError(model.url, f"checksum mismatch ({model.algo} does not start with {model.digest})",
                             "retry; if it persists the file on the server changed")
    logging.info("%s verified and saved to %s", model.name, out)
    return out
