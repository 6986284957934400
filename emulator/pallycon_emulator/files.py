"""Where emulated storages live: folders under a data directory, or nowhere (marker paths).

With a data directory, a storage is the folder ``<data_dir>/<aws_bucket>/``. A job's inputs are
``<bucket folder>/<contents_path>``: a missing or empty file (or a folder with no non-empty file)
fails the job with ``WM999`` / ``WM900013``. A finished job writes the service's output layout
``<bucket folder>/<output path>/<content_id>/<0|1>/<dash|hls>/`` with ``stream.mpd`` and
``master.m3u8`` manifests.

Without a data directory nothing is read or written; instead an input path whose file name
starts with ``missing`` or ``empty`` (``videos/missing.mp4``, ``empty-take2.mp4``) fails the job
the same way.
"""

from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath

from pallycon.codes import INPUT_MISSING, PackagingError, packaging_error
from pallycon_emulator.state import Job, Storage

log = logging.getLogger("emulator")

FAILING_MARKERS = ("missing", "empty")
MANIFESTS = {"dash": "stream.mpd", "hls": "master.m3u8"}
VARIANTS = ("0", "1")


def _inside(root: Path, relative: str) -> Path | None:
    """``root / relative``, or ``None`` if that escapes ``root``."""
    candidate = (root / relative.lstrip("/")).resolve()
    return candidate if candidate.is_relative_to(root.resolve()) else None


def _has_content(path: Path | None) -> bool:
    if path is None:
        return False
    if path.is_file():
        return path.stat().st_size > 0
    if path.is_dir():
        return any(child.is_file() and child.stat().st_size > 0 for child in path.rglob("*"))
    return False


def input_failure(
    contents_path: list[str], storage: Storage, data_dir: Path | None
) -> PackagingError | None:
    """The packaging error a job with these inputs will end in, if any."""
    for item in contents_path:
        if data_dir is None:
            missing = PurePosixPath(item).name.lower().startswith(FAILING_MARKERS)
        else:
            missing = not _has_content(_inside(data_dir / storage.aws_bucket, item))
        if missing:
            return packaging_error(INPUT_MISSING)
    return None


def write_outputs(job: Job, storage: Storage, data_dir: Path) -> Path | None:
    """Write the two watermarked variants' manifests; the content folder, or ``None``."""
    request = job.request
    bucket = data_dir / storage.aws_bucket
    target = _inside(bucket, f"{request.storage.output.path}/{request.content_id}")
    if target is None:
        log.warning("job %s: output path escapes the storage folder, nothing written", job.job_id)
        return None
    for variant in VARIANTS:
        for fmt in request.streaming_format:
            folder = target / variant / fmt
            folder.mkdir(parents=True, exist_ok=True)
            (folder / MANIFESTS[fmt]).write_text(_manifest(fmt, request.content_id, variant))
    return target


def _manifest(fmt: str, content_id: str, variant: str) -> str:
    if fmt == "hls":
        return (
            "#EXTM3U\n#EXT-X-VERSION:6\n"
            f"## pallycon-pack emulator: {content_id}, watermark variant {variant}\n"
            '#EXT-X-STREAM-INF:BANDWIDTH=2000000,RESOLUTION=1280x720,CODECS="avc1.64001f"\n'
            "video/720p.m3u8\n"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<!-- pallycon-pack emulator: {content_id}, watermark variant {variant} -->\n"
        '<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" minBufferTime="PT2S" '
        'profiles="urn:mpeg:dash:profile:isoff-on-demand:2011"/>\n'
    )
