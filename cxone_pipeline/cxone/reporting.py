"""CXone's Reporting API: a window of records, paged by `skip` under any server page cap."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from cxone_pipeline.cxone.client import CXoneClient
from cxone_pipeline.cxone.errors import CXoneAPIError

# A server that ignored `skip` would serve the same page for ever.
MAX_PAGES = 10_000

_HINTS = {
    400: "CXone refused the query; the text says which parameter",
    403: (
        "the access key's user may not read this report: give its role the Reporting API "
        "permissions (see docs/cxone-setup.md, Import history from CXone)"
    ),
    404: (
        "this API version or endpoint is not served here: check CXONE_API_VERSION and "
        "CXONE_API_BASE_URL"
    ),
}


def utc_z(moment: datetime) -> str:
    """A time as CXone's query parameters take it: UTC, milliseconds, a literal Z."""
    moment = moment.astimezone(timezone.utc)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class Page:
    records: list[dict[str, Any]]
    total_records: int | None  # what the query matches in all, when CXone says
    has_next: bool | None  # None when the answer carries no `_links`


@dataclass(frozen=True)
class Fetched:
    records: list[dict[str, Any]]
    pages: int  # requests answered, the empty last one included
    total_records: int | None  # the first page's totalRecords


class ReportingAPI:
    """The Reporting API of `client`'s tenant at `client.config.api_version`."""

    def __init__(self, client: CXoneClient) -> None:
        self.client = client
        self.api_version = client.config.api_version
        self.page_size = client.config.page_size

    def path(self, endpoint: str) -> str:
        return f"/incontactapi/services/v{self.api_version}/{endpoint}"

    async def page(self, endpoint: str, records: str, params: Mapping[str, str], skip: int) -> Page:
        """One page of `endpoint`'s `records` list; a 204 No Content is an empty page."""
        query = {**params, "skip": str(skip), "top": str(self.page_size)}
        path = self.path(endpoint)
        body = await self.client.request("GET", path, params=query, hints=_HINTS)
        if body is None:
            return Page([], 0 if skip == 0 else None, False)
        if not isinstance(body, dict):
            raise CXoneAPIError("GET", path, 200, "expected a JSON object")
        if records not in body and isinstance(body.get("resultSet"), dict):
            body = body["resultSet"]  # how older API versions wrap the answer
        items = body.get(records, [])
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise CXoneAPIError(
                "GET", path, 200, f"{records!r} is not a list of objects: check pull.records"
            )
        total = body.get("totalRecords")
        links = body.get("_links")
        return Page(
            items,
            total if isinstance(total, int) and not isinstance(total, bool) else None,
            bool(links.get("next")) if isinstance(links, dict) else None,
        )

    async def fetch(self, endpoint: str, records: str, params: Mapping[str, str]) -> Fetched:
        """Every record of a query, page by page until one is empty or short of the largest
        page so far (the server's cap, which may be below `top`), `_links.next` is absent or
        `totalRecords` is reached."""
        fetched: list[dict[str, Any]] = []
        total: int | None = None
        largest = 0
        for pages in range(1, MAX_PAGES + 1):
            page = await self.page(endpoint, records, params, skip=len(fetched))
            if pages == 1:
                total = page.total_records
            fetched += page.records
            if last_page(page, len(fetched), largest):
                return Fetched(fetched, pages, total)
            largest = max(largest, len(page.records))
        raise CXoneAPIError(
            "GET",
            self.path(endpoint),
            200,
            f"still serving records after {MAX_PAGES} pages: the server may be ignoring skip",
        )


def last_page(page: Page, fetched: int, largest: int) -> bool:
    """Whether `page`, after which `fetched` records of the query are in, ends it."""
    return (
        not page.records
        or len(page.records) < largest
        or page.has_next is False
        or (page.total_records is not None and fetched >= page.total_records)
    )
