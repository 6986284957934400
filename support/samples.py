"""Sample sites, request bodies and signatures, shared by the tests and the benchmarks."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pallycon.models import StorageRegisterRequest
from pallycon.signing import SiteCredentials

# PallyCon's own tutorial credentials, from their published request samples.
SAMPLE_SITE = SiteCredentials.of(
    "TUTO", "LT2FVJDp2Xr018zf4Di6lzvNOv3DKP20", "lU5D8s3PWoLls3PWFWkClULlFWk5D8oC"
)
REGION = "RG011"
#: A second site, for several sites on one fleet (made up: not PallyCon's).
OTHER_SITE = SiteCredentials.of(
    "BRND", "BrandAccessKey-0123456789abcdefg", "0123456789abcdef0123456789abcdef"
)

# PallyCon's Python request sample (pallycon-wm-api-request-sample, "Result of quick start"):
# site TUTO, json.dumps({"storage_type": "S3", "region": "RG011"}) at 2022-03-30T08:29:57Z.
SAMPLE_JSON = b'{"storage_type": "S3", "region": "RG011"}'
SAMPLE_TIME = datetime(2022, 3, 30, 8, 29, 57, tzinfo=UTC)
SAMPLE_APIDATA = (
    "eyJkYXRhIjogIjFoY0crOUhMckR1ZWlJTjlDWXQ4SVNvekIzY0x6Zy9Db2VHNE5PKzY2cW9WRWo5eEJ1S2JzZkNUaVM3"
    "KzZrWWoiLCAidGltZXN0YW1wIjogIjIwMjItMDMtMzBUMDg6Mjk6NTdaIiwgImhhc2giOiAibWlUaUxSbmh5ZnBWdmEy"
    "ZHlVbXdHVHI1VzV3NUpkRmFrbnl0YXdFNTVzaz0ifQ=="
)
SAMPLE_DATA = "1hcG+9HLrDueiIN9CYt8ISozB3cLzg/CoeG4NO+66qoVEj9xBuKbsfCTiS7+6kYj"
SAMPLE_HASH = "miTiLRnhyfpVva2dyUmwGTr5W5w5JdFaknytawE55sk="


def job_body(**changes: Any) -> dict[str, Any]:
    """The guide's example job (storages ST1 and ST2), with ``changes``."""
    body: dict[str, Any] = {
        "job_name": "episode-1",
        "storage": {
            "input": {"storage_id": "ST1", "contents_path": ["in/episode-1.mp4"]},
            "output": {"storage_id": "ST2", "path": "out"},
        },
        "content_id": "episode-1",
        "streaming_format": ["dash", "hls"],
        "protect_type": ["watermark", "drm"],
    }
    body.update(changes)
    return body


def body_for(storage_id: str, content_id: str, **changes: Any) -> dict[str, Any]:
    """:func:`job_body` reading and writing ``storage_id``, for ``content_id``."""
    body = job_body(content_id=content_id, **changes)
    body["storage"]["input"]["storage_id"] = body["storage"]["output"]["storage_id"] = storage_id
    return body


def storage_request(
    name: str = "store", bucket: str = "my-bucket", region: str = REGION
) -> StorageRegisterRequest:
    """A storage registration with made-up AWS credentials."""
    return StorageRegisterRequest.model_validate(
        {"storage_name": name, "id": "AKIAEXAMPLE", "password": "aws-secret-value",
         "aws_bucket": bucket, "region": region}
    )  # fmt: skip
