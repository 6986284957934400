"""Every code in the Packaging API guide, with its meaning and its classification.

- API error codes (``0000``, ``A....``): retryable or permanent.
- Packaging status codes (``WM000`` ... ``WM999``): stage, terminal or not, success or failure.
- Packaging error codes (``WM900...``): meaning and likely cause (input, storage or service).

The job list's ``status`` is read as a WM code or as a word (the guide never says which it
carries); :func:`parse_status` accepts both and is the one place that decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

SUCCESS = "0000"
INVALID_PARAMETER = "A1000"
INVALID_TIMESTAMP = "A1002"
UNKNOWN_SITE = "A1003"
DECRYPT_FAILED = "A1006"
HASH_MISMATCH = "A1007"
API_DATA_PARSING_ERROR = "A7008"
INVALID_API_VERSION = "A7009"


@dataclass(frozen=True)
class ApiCode:
    code: str
    meaning: str
    retryable: bool
    #: The likely cause on our side, where the code points at one setting.
    hint: str = ""


#: API error codes. Retryable: a fresh signature or a later attempt can succeed (A1002 is a
#: clock-skewed timestamp: re-signing fixes it; A4002/A4003 are server-side failures).
API_CODES: dict[str, ApiCode] = {
    entry.code: entry
    for entry in (
        ApiCode(SUCCESS, "Succeeded", retryable=False),
        ApiCode(INVALID_PARAMETER, "Invalid input parameter", retryable=False),
        ApiCode(INVALID_TIMESTAMP, "Invalid timestamp format", retryable=True),
        ApiCode(
            UNKNOWN_SITE, "Cannot find the site ID", retryable=False, hint="is the site id right?"
        ),
        ApiCode(
            DECRYPT_FAILED,
            "Failed to decrypt with the site key",
            retryable=False,
            hint="is the site key this site's?",
        ),
        ApiCode(
            HASH_MISMATCH,
            "Failed to verify the hash",
            retryable=False,
            hint="is the access key this site's?",
        ),
        ApiCode("A4002", "Failed to store watermark data", retryable=True),
        ApiCode("A4003", "Failed to create watermark data", retryable=True),
        ApiCode(API_DATA_PARSING_ERROR, "API data parsing error", retryable=False),
        ApiCode(INVALID_API_VERSION, "Invalid API version", retryable=False),
    )
}


def api_code(code: str) -> ApiCode:
    """The table entry for ``code``; an unknown code is permanent (fail loudly, never loop)."""
    return API_CODES.get(code) or ApiCode(code, "Unknown API error code", retryable=False)


class Stage(StrEnum):
    """Where a packaging job is."""

    QUEUED = "queued"
    PREPARING = "preparing"
    DOWNLOADING = "downloading"
    WATERMARKING = "watermarking"
    DRM = "drm"
    UPLOADING = "uploading"
    COMPLETE = "complete"
    STOPPING = "stopping"
    STOPPED = "stopped"
    ERROR = "error"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class StatusCode:
    code: str
    meaning: str
    stage: Stage
    terminal: bool
    success: bool

    @property
    def failed(self) -> bool:
        return self.terminal and not self.success


def _status(
    code: str, meaning: str, stage: Stage, *, end: bool = False, ok: bool = False
) -> StatusCode:
    return StatusCode(code, meaning, stage, terminal=end, success=ok)


#: Packaging status codes, in the order a job passes through them.
STATUS_CODES: dict[str, StatusCode] = {
    entry.code: entry
    for entry in (
        _status("WM000", "Ready", Stage.QUEUED),
        _status("WM010", "Get Job List", Stage.PREPARING),
        _status("WM020", "Send Agent", Stage.PREPARING),
        _status("WM021100", "File downloading", Stage.DOWNLOADING),
        _status("WM021200", "File download complete", Stage.DOWNLOADING),
        _status("WM022100", "Watermark packaging", Stage.WATERMARKING),
        _status("WM022200", "Watermark packaging complete", Stage.WATERMARKING),
        _status("WM023100", "DRM packaging", Stage.DRM),
        _status("WM023200", "DRM packaging complete", Stage.DRM),
        _status("WM023300", "AKAMAI Convert", Stage.DRM),
        _status("WM024100", "File uploading", Stage.UPLOADING),
        _status("WM024200", "File uploading complete", Stage.UPLOADING),
        _status("WM030", "Packaging complete", Stage.COMPLETE, end=True, ok=True),
        _status("WM100", "Request packaging stop", Stage.STOPPING),
        _status("WM200", "Packaging stop complete", Stage.STOPPED, end=True),
        _status("WM999", "Packaging error", Stage.ERROR, end=True),
    )
}

#: The sequence a job runs through; the DRM steps only when DRM is asked for.
WATERMARK_SEQUENCE = (
    "WM000", "WM010", "WM020", "WM021100", "WM021200", "WM022100", "WM022200",
    "WM024100", "WM024200", "WM030",
)  # fmt: skip
DRM_STEPS = ("WM023100", "WM023200")


def status_sequence(drm: bool) -> tuple[str, ...]:
    """The status codes a successful job passes through, in order."""
    if not drm:
        return WATERMARK_SEQUENCE
    split = WATERMARK_SEQUENCE.index("WM024100")
    return WATERMARK_SEQUENCE[:split] + DRM_STEPS + WATERMARK_SEQUENCE[split:]


#: Status words (the job list's ``search_status`` vocabulary), as a job entry may carry them.
STATUS_WORDS: dict[str, StatusCode] = {
    "ready": _status("ready", "Ready", Stage.QUEUED),
    "pending": _status("pending", "Pending", Stage.QUEUED),
    "working": _status("working", "Working", Stage.PREPARING),
    "process": _status("process", "Processing", Stage.PREPARING),
    "processing": _status("processing", "Processing", Stage.PREPARING),
    "success": _status("success", "Packaging complete", Stage.COMPLETE, end=True, ok=True),
    "complete": _status("complete", "Packaging complete", Stage.COMPLETE, end=True, ok=True),
    "failed": _status("failed", "Packaging error", Stage.ERROR, end=True),
    "fail": _status("fail", "Packaging error", Stage.ERROR, end=True),
    "error": _status("error", "Packaging error", Stage.ERROR, end=True),
    "stop": _status("stop", "Packaging stopped", Stage.STOPPED, end=True),
}

#: The word the emulator writes for each WM code when it reports words.
WORD_FOR_STATUS: dict[str, str] = {
    "WM000": "ready",
    "WM030": "success",
    "WM100": "process",
    "WM200": "stop",
    "WM999": "failed",
}


def status_word(code: str) -> str:
    """The status word for a WM code (every in-progress code is ``process``)."""
    return WORD_FOR_STATUS.get(code, "process")


def parse_status(value: str) -> StatusCode:
    """A job list ``status``: a WM code (any case) or a word. Unknown values are not terminal."""
    text = value.strip()
    known = STATUS_CODES.get(text.upper()) or STATUS_WORDS.get(text.lower())
    if known is not None:
        return known
    return StatusCode(text, "Unknown status", Stage.UNKNOWN, terminal=False, success=False)


class Cause(StrEnum):
    """Who can fix a failed job."""

    INPUT = "input"  # the content or the request: fix and submit again
    STORAGE = "storage"  # the storage's credentials, bucket or paths
    SERVICE = "service"  # PallyCon's side: contact support or retry later


@dataclass(frozen=True)
class PackagingError:
    code: str
    meaning: str
    cause: Cause


_INPUT_ERRORS = {"WM900013", "WM900014", "WM900015", "WM900016", "WM900017", "WM900022"}
_STORAGE_ERRORS = {
    "WM900007", "WM900008", "WM900009", "WM900010", "WM900011", "WM900012", "WM900019",
    "WM900020", "WM900021", "WM900108", "WM900111", "WM900113",
}  # fmt: skip

_PACKAGING_ERROR_TEXT = {
    "WM900101": "Failed to get Job List.",
    "WM900102": "This Mode does not exist.",
    "WM900103": "This Mode does not exist.",
    "WM900104": "Failed to get site information.",
    "WM900105": "An invalid value from the StoreServer was passed.",
    "WM900106": "Failed to get CID.",
    "WM900107": "Failed to get MetaData Information.",
    "WM900108": "No bucket information or file path.",
    "WM900109": "Failed to update DB status to SEND_AGENT.",
    "WM900110": "Failed to update DB status to END.",
    "WM900111": "Failed to select storage data.",
    "WM900112": "Failed to get mail form.",
    "WM900113": "Failed to set Storage information.",
    "WM900114": "Internal cluster error.",
    "WM900115": "ClusterEvent.UnreachableMember.",
    "WM900116": "Failed to get pack list.",
    "WM900117": "Failed to parse Pack Information.",
    "WM900118": "Failed to update DB status to get pack information.",
    "WM900119": "Failed to update DB status to cancel job",
    "WM900120": "Failed to update DB status.",
    "WM900121": "Job list separate fail.",
    "WM900122": "Failed to call lambda to stop the instance.",
    "WM900123": "Failed to make api data.",
    "WM900124": "Failed to call api.",
    "WM900125": "Failed to parse api response data.",
    "WM900126": "Response API error code is not success.",
    "WM900127": "Watermark status Update Fail to WM010",
    "WM900128": "Watermark status Update Fail to WM030",
    "WM900129": "Watermark status Update Fail to WM02X",
    "WM900130": "Watermark status Update Fail to WM200",
    "WM900131": "Failed to get stop request list.",
    "WM900132": "Failed to parse api response data by WM100.",
    "WM900133": "Watermark status Update Fail to error.",
    "WM900134": "Job information is null.",
    "WM900135": "Failed to decrypt pki key.",
    "WM900136": "Failed to mapping api data to decrypt pki key.",
    "WM900137": "Failed to create job data.",
    "WM900001": "Common site key decrypt fail.",
    "WM900002": "Watermark Job Call API Parameter make fail.",
    "WM900003": "Watermark Job list API call fail.",
    "WM900004": "API Return parser fail.",
    "WM900005": "API error.",
    "WM900006": "Job Executor error.",
    "WM900007": "S3 Bucket Access key and id is invalid.",
    "WM900008": "S3 Bucket connect fail.(key or region is invalid)",
    "WM900009": "S3 Bucket info is invalid.",
    "WM900010": "Contents download failed.",
    "WM900011": "Subtitles download failed.",
    "WM900012": "S3 get Object failed.",
    "WM900013": "Download failed.(File does not exist or size is 0kb.)",
    "WM900014": "The size of the content file is too large. Please switch to commercial.",
    "WM900015": "Codec is invalid.",
    # The guide's text still says 12 minutes; PallyCon's release notes lowered it to 5.
    "WM900016": "Contents playback time is too short.(At least 5 minutes)",
    "WM900017": "Video size is invalid.(minimum width 640px)",
    "WM900018": "Temp file delete failed.",
    "WM900019": "Upload process failed.",
    "WM900020": "S3 put object process failed.",
    "WM900021": "Upload file empty.",
    "WM900022": "Media info get failed.",
}


def _cause(code: str) -> Cause:
    if code in _INPUT_ERRORS:
        return Cause.INPUT
    if code in _STORAGE_ERRORS:
        return Cause.STORAGE
    return Cause.SERVICE


PACKAGING_ERRORS: dict[str, PackagingError] = {
    code: PackagingError(code, text, _cause(code)) for code, text in _PACKAGING_ERROR_TEXT.items()
}

INPUT_MISSING = "WM900013"


def packaging_error(code: str) -> PackagingError:
    """The table entry for a WM900 code; unknown codes are attributed to the service."""
    return PACKAGING_ERRORS.get(code) or PackagingError(
        code, "Unknown packaging error code", Cause.SERVICE
    )
