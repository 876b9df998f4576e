"""Where a conversion writes: a directory that appears whole or not at all."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from secbot.model.errors import ConversionRefused


def refuse_existing(dst: Path) -> None:
    """A conversion never writes over something: DST must be new or an empty directory."""
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise ConversionRefused(f"{dst} already exists and is not empty; choose a new directory.")


@contextmanager
def written_whole(dst: Path) -> Iterator[Path]:
    """The block writes into `DST.partial`, renamed to DST when it ends and removed when it fails,
    so DST never holds half a model."""
    partial = dst.with_name(dst.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        yield partial
        if dst.exists():
            dst.rmdir()
        partial.rename(dst)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
