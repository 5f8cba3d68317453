"""Saved results in an S3-compatible bucket (AWS S3, Cloudflare R2, MinIO), through ``obstore``.

``AIPG_MEDIA_URL=s3://bucket/prefix`` names the bucket and the key prefix; everything else comes
from the standard AWS variables, which ``obstore`` reads itself: ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY`` (and ``AWS_SESSION_TOKEN``), ``AWS_REGION`` and, for a store other
than AWS, ``AWS_ENDPOINT_URL``. An ``http://`` endpoint (a MinIO on the same host) is allowed
because the user named it. ``obstore`` is the optional ``s3`` extra, imported on first use.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from aipg_mcp.server.media.images import MediaError
from aipg_mcp.server.media.store import (
    EXTENSION,
    MediaStoreError,
    check_size,
    checked_name,
)

if TYPE_CHECKING:
    from obstore.store import S3Store

SETTING = "AIPG_MEDIA_URL"
_ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT")
_STATUS = re.compile(r"status code: (\d{3}[A-Za-z ]*)")
# Calls to the store give up within about a minute on an unreachable endpoint, and a large
# file (up to 256 MB) still has minutes to upload.
_CLIENT_OPTIONS: dict[str, Any] = {
    "connect_timeout": timedelta(seconds=5),
    "timeout": timedelta(seconds=300),
}
_RETRY: dict[str, Any] = {"max_retries": 3, "retry_timeout": timedelta(seconds=30)}


class BucketStore:
    """Generated files saved as objects ``<prefix>/<job_id>/<file_id>.<extension>``.

    A save is one PUT of the whole file, so an object is there whole or not at all, and a
    file of the same name is replaced. Nothing is sent until the first call.
    """

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self._store: S3Store | None = None

    @property
    def where(self) -> str:
        return self.url

    async def save(self, job_id: str, file_id: str, data: bytes, *, extension: str = "webp") -> str:
        """Put one object and return its ``s3://`` URL."""
        checked_name(job_id, file_id, extension)
        key = f"{job_id}/{file_id}.{extension}"
        check_size(len(data), key)
        bucket = self._bucket()
        import obstore

        try:
            await obstore.put_async(bucket, key, data, use_multipart=False)
        except Exception as exc:
            raise self._failure("save", key, exc) from None
        return f"{self.url}/{key}"

    async def read(self, job_id: str, file_id: str, extension: str | None = None) -> bytes | None:
        checked_name(job_id, file_id, extension)
        key = (
            f"{job_id}/{file_id}.{extension}" if extension else await self._any_key(job_id, file_id)
        )
        if key is None:
            return None
        bucket = self._bucket()
        import obstore

        try:
            got = await obstore.get_async(bucket, key)
            check_size(got.meta["size"], key)
            return bytes(await got.bytes_async())
        except MediaError:
            raise
        except FileNotFoundError as exc:
            if _no_bucket(exc):
                raise self._failure("read", key, exc) from None
            return None
        except Exception as exc:
            raise self._failure("read", key, exc) from None

    async def _any_key(self, job_id: str, file_id: str) -> str | None:
        """The first saved object of ``file_id``, whatever its extension."""
        bucket = self._bucket()
        import obstore

        prefix = f"{file_id}."
        try:
            listed = await obstore.list(bucket, prefix=job_id).collect_async()
        except Exception as exc:
            raise self._failure("list", f"{job_id}/", exc) from None
        names = sorted(item["path"].rpartition("/")[2] for item in listed)
        for name in names:
            if name.startswith(prefix) and EXTENSION.fullmatch(name[len(prefix) :]):
                return f"{job_id}/{name}"
        return None

    def _bucket(self) -> S3Store:
        if self._store is None:
            self._store = _open(self.url)
        return self._store

    def _failure(self, action: str, key: str, exc: Exception) -> MediaStoreError:
        """What went wrong, in words that name the settings to check and hold no secret."""
        return MediaStoreError(f"{SETTING} {self.url}: could not {action} {key}: {_reason(exc)}")


def _open(url: str) -> S3Store:
    try:
        from obstore.store import S3Store
    except ImportError:
        raise MediaStoreError(
            f"{SETTING} names an S3 bucket, which needs the s3 extra: "
            "pip install 'aipg-mcp[s3]' (or unset it to save files in AIPG_OUTPUT_DIR)"
        ) from None
    endpoint = next((os.environ[v] for v in _ENDPOINT_VARIABLES if os.environ.get(v)), "")
    options = {**_CLIENT_OPTIONS, "allow_http": endpoint.lower().startswith("http://")}
    try:
        return S3Store.from_url(url, client_options=options, retry_config=_RETRY)  # type: ignore[arg-type]
    except Exception as exc:
        raise MediaStoreError(
            f"{SETTING} {url}: the S3 client could not be set up from it and the AWS_* "
            f"variables: {_reason(exc)}"
        ) from None


def _no_bucket(exc: Exception) -> bool:
    return "NoSuchBucket" in str(exc)


def _reason(exc: Exception) -> str:
    """The cause of a failed call, from the kind of error and the HTTP status alone: the
    store's own message may quote the endpoint's URL or the request's headers."""
    from obstore import exceptions as errors

    text = str(exc)
    status = _STATUS.search(text)
    said = f" (the store answered {status.group(1).strip()})" if status else ""
    if isinstance(exc, errors.UnauthenticatedError | errors.PermissionDeniedError) or (
        status and status.group(1).startswith(("401", "403"))
    ):
        return (
            "the store refused the credentials; check AWS_ACCESS_KEY_ID and "
            f"AWS_SECRET_ACCESS_KEY, and that they may use this bucket{said}"
        )
    if isinstance(exc, FileNotFoundError) and _no_bucket(exc):
        return f"the bucket does not exist; create it or fix {SETTING}{said}"
    if "error sending request" in text or "timed out" in text.lower():
        return (
            "the store could not be reached; check AWS_ENDPOINT_URL (unset for AWS itself) "
            "and AWS_REGION"
        )
    return f"{type(exc).__name__}{said}; check {SETTING} and the AWS_* variables"
