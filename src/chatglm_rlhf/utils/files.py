"""Writing files so that a crash or a full disk never leaves half a file under its final name, and
checking the files a later step loads (truncated safetensors, unreadable JSON) before trusting them.

Every marker, metrics file, export and model save goes through :func:`atomic_write_text` or
:func:`atomic_save`: the bytes go to a temporary name in the same folder and are renamed into place
(``os.replace`` is atomic on POSIX), so a reader sees the old file or the new one, never a mix. What a
temporary file held is deleted when the write fails (a full disk gets its space back).
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from chatglm_rlhf.errors import CorruptFileError

DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
# A model's weight files: a new save replaces all of them (an old shard index left beside a single file
# would make from_pretrained look for shards that are gone).
WEIGHT_FILES = (
    "model*.safetensors",
    "model.safetensors.index.json",
    "pytorch_model*.bin",
    "pytorch_model.bin.index.json",
)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding=encoding) as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_save(out: str | os.PathLike) -> Iterator[Path]:
    """A temporary folder next to ``out`` to save into (``save_pretrained(tmp)``); when the block ends
    without an error every file is renamed into ``out`` (other files there, such as logs and
    checkpoints, are kept). On an error the temporary folder is removed and ``out`` is untouched."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.saving."))
    try:
        try:
            yield tmp
        except Exception as e:  # a full disk seen by a library that does not raise OSError: say it is one
            code = disk_errno(e)
            if code is None or isinstance(e, OSError):
                raise
            raise OSError(code, os.strerror(code), str(out)) from e
        new = {f.name for f in tmp.iterdir()}
        for stale in (f for pattern in WEIGHT_FILES for f in out.glob(pattern) if f.name not in new):
            stale.unlink()  # a previous save's other shards (save_pretrained would remove them too)
        for src in sorted(tmp.rglob("*")):
            dst = out / src.relative_to(tmp)
            if src.is_dir():
                dst.mkdir(parents=True, exist_ok=True)
            else:
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def disk_errno(e: BaseException) -> int | None:
    """The errno of a write that ran out of space, else None. Libraries written in Rust or C++ report it
    in their message, not as an OSError: safetensors "I/O error: No space left on device (os error
    28)", torch.save "file write failed"."""
    if isinstance(e, OSError):
        return e.errno if e.errno in DISK_FULL else None
    m = re.search(r"os error (\d+)", str(e))
    if m and int(m.group(1)) in DISK_FULL:
        return int(m.group(1))
    if "file write failed" in str(e) or "No space left on device" in str(e):
        return errno.ENOSPC
    return None


def is_disk_full(e: BaseException) -> bool:
    return disk_errno(e) is not None


def disk_full_message(e: BaseException) -> str:
    """One line for a write that ran out of space (or hit a file-size limit)."""
    where = getattr(e, "filename", None) or "a file"
    return (
        f"{where}: {os.strerror(disk_errno(e) or errno.ENOSPC).lower()} while writing; nothing was half-written "
        f"(files are written to a temporary name, then renamed). Free some space and run the same command "
        f"again: finished stages and checkpoints are kept"
    )


def check_safetensors(path: str | os.PathLike) -> None:
    """Raise :class:`CorruptFileError` when ``path`` is not a whole safetensors file: its 8-byte header
    length, JSON header and the tensors' byte ranges must add up to the file's size exactly. (The format
    has no checksum: a changed byte inside a tensor cannot be seen; a truncated or garbled file can.)"""
    path = Path(path)
    size = path.stat().st_size
    why = ""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            if n < 0 or 8 + n > size:
                why = f"truncated ({size} bytes, shorter than its header says)"
            else:
                header = json.loads(f.read(n))
                ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
                want = 8 + n + max(ends, default=0)
                if want != size:
                    why = (
                        f"truncated ({size} of {want} bytes)"
                        if size < want
                        else f"{size - want} bytes too many"
                    )
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
        why = f"not a safetensors file ({type(e).__name__}: {e})"
    if why:
        raise CorruptFileError(path, f"{path}: {why}")


def check_model_files(folder: str | os.PathLike) -> None:
    """:func:`check_safetensors` on every ``*.safetensors`` file of a model or checkpoint folder."""
    for p in sorted(Path(folder).glob("*.safetensors")):
        check_safetensors(p)
