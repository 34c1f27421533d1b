"""A fresh secure connect bundle from Astra's DevOps API, for runs given a database id instead of a zip.

Bundles expire, and CI secrets are easier to keep as a token and a database id than as a zip. With
``--astra-db-id`` (``ASTRA_DB_ID``), optionally ``--astra-db-region``, the token and no bundle path, each
pytest process asks the DevOps API for the bundle's download link
(``POST /v2/databases/{id}/secureBundleURL?all=true``, one entry per region) and fetches the zip into its
private bundle directory (bundle.py). The link is pre-signed, so it is as secret as the token: neither
ever appears in a message. TLS is verified against the system's CAs (``SSL_CERT_FILE`` is honoured).
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

TIMEOUT = 30.0
HOW_TO_FIX_ID = "fix --astra-db-id (ASTRA_DB_ID)"


class BundleDownloadError(Exception):
    """One sentence naming the cause; never a URL or the token."""


def download_bundle(target: Path, database_id: str, token: str, region: str | None, devops_url: str,
                    timeout: float = TIMEOUT) -> str:
    """Write the bundle of ``database_id`` (its ``region``, else its first) to ``target``; return the
    region it is for. ``devops_url`` is the astra_devops_url setting (its default is the only copy of
    Astra's address)."""
    entries = _bundle_links(database_id, token, devops_url, timeout)
    entry = _pick_region(entries, database_id, region)
    _fetch(entry["downloadURL"], target, database_id, timeout)
    return str(entry.get("region") or region or "its first region")


def _bundle_links(database_id: str, token: str, devops_url: str, timeout: float) -> list[dict]:
    url = (f"{devops_url.rstrip('/')}/v2/databases/{urllib.parse.quote(database_id, safe='')}"
           f"/secureBundleURL?all=true")
    request = urllib.request.Request(url, data=b"", method="POST", headers={
        "Authorization": f"Bearer {token}", "Accept": "application/json", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=ssl.create_default_context()) as response:
            body = json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        raise BundleDownloadError(_refusal(error.code, database_id)) from None
    except (urllib.error.URLError, OSError) as error:
        fix = ("trust its certificate authority (SSL_CERT_FILE names the CA file Python uses)"
               if _is_tls(error) else "check the network")
        raise BundleDownloadError(
            f"the Astra DevOps API could not be reached to download the bundle ({_reason(error)}); {fix}, "
            f"or set --astra-bundle (ASTRA_DB_SECURE_BUNDLE_PATH) to a downloaded bundle") from None
    except ValueError:
        body = None
    entries = body if isinstance(body, list) else [body] if isinstance(body, dict) else []
    entries = [entry for entry in entries if isinstance(entry, dict) and entry.get("downloadURL")]
    if not entries:
        raise BundleDownloadError(
            f"the Astra DevOps API gave no bundle link for database {database_id}; set --astra-bundle "
            f"(ASTRA_DB_SECURE_BUNDLE_PATH) to a bundle downloaded from the Astra console")
    return entries


def _refusal(status: int, database_id: str) -> str:
    if status in (401, 403):
        return (f"the Astra DevOps API refused the token (HTTP {status}) when asked for the bundle of database "
                f"{database_id}; use a token whose role may download the secure connect bundle "
                f"(--astra-token, ASTRA_DB_APPLICATION_TOKEN)")
    if status in (400, 404):
        return (f"the Astra DevOps API knows no database {database_id} for this token (HTTP {status}); "
                f"{HOW_TO_FIX_ID}")
    if status == 409:
        return (f"the Astra DevOps API cannot give a bundle for database {database_id} in its current state "
                f"(HTTP 409: parked, hibernated or terminating); resume it in the Astra console")
    return (f"the Astra DevOps API answered HTTP {status} when asked for the bundle of database {database_id}; "
            f"try again, or set --astra-bundle (ASTRA_DB_SECURE_BUNDLE_PATH) to a downloaded bundle")


def _pick_region(entries: list[dict], database_id: str, region: str | None) -> dict:
    if region is None:
        return entries[0]
    for entry in entries:
        if entry.get("region") == region:
            return entry
    known = ", ".join(sorted(str(entry.get("region")) for entry in entries if entry.get("region"))) or "none named"
    raise BundleDownloadError(f"database {database_id} has no region {region!r} (it has: {known}); "
                              f"fix --astra-db-region (ASTRA_DB_REGION)")


def _fetch(link: str, target: Path, database_id: str, timeout: float) -> None:
    if not str(link).startswith("https://"):
        raise BundleDownloadError(f"the Astra DevOps API gave a bundle link for database {database_id} that is "
                                  f"not HTTPS; refusing it")
    try:
        with urllib.request.urlopen(link, timeout=timeout, context=ssl.create_default_context()) as response:
            data = response.read()
    except urllib.error.HTTPError as error:
        raise BundleDownloadError(
            f"the bundle download for database {database_id} answered HTTP {error.code} (its link expires "
            f"within minutes); try again") from None
    except (urllib.error.URLError, OSError) as error:
        raise BundleDownloadError(
            f"the bundle download for database {database_id} failed ({_reason(error)}); try again") from None
    target.write_bytes(data)
    target.chmod(0o600)
    try:
        with zipfile.ZipFile(target) as archive:
            archive.namelist()
    except zipfile.BadZipFile:
        raise BundleDownloadError(f"what the Astra DevOps API gave as the bundle of database {database_id} is "
                                  f"not a zip file; try again") from None


def _reason(error: BaseException) -> str:
    """The cause without the URL (urllib's reasons never carry it; this keeps it so)."""
    reason = getattr(error, "reason", error)
    if isinstance(reason, ssl.SSLCertVerificationError):
        return f"TLS: {reason.verify_message}"
    text = str(reason).splitlines()[0] if str(reason).strip() else type(reason).__name__
    return text[:160]


def _is_tls(error: BaseException) -> bool:
    return isinstance(getattr(error, "reason", error), ssl.SSLError)
