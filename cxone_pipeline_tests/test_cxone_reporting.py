"""The Reporting API client over real HTTP against the simulator: paging, 204, faults, errors."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from cxone_pipeline.cxone.client import CXoneClient
from cxone_pipeline.cxone.config import CXoneConfig
from cxone_pipeline.cxone.errors import CXoneAPIError, CXoneRetriesExhausted
from cxone_pipeline.cxone.reporting import Fetched, Page, ReportingAPI, last_page, utc_z
from cxone_pipeline.cxone.retry import RetryPolicy
from cxone_pipeline_tests.cxone_simulator import CXoneSimulator, completed_contacts

HOUR = datetime(2026, 11, 27, 10, tzinfo=timezone.utc)
WINDOW = {"startDate": utc_z(HOUR), "endDate": utc_z(HOUR + timedelta(hours=1))}
COMPLETED = "contacts/completed"


def fetch(cfg: CXoneConfig, params: dict[str, str] = WINDOW) -> Fetched:
    async def run() -> Fetched:
        async with CXoneClient(cfg) as client:
            return await ReportingAPI(client).fetch(COMPLETED, "completedContacts", params)

    return asyncio.run(run())


def skips(sim: CXoneSimulator) -> list[str]:
    return [seen["skip"] for seen in sim.reporting_seen]


@pytest.fixture
def hour_of_contacts(sim: CXoneSimulator) -> list[dict[str, Any]]:
    contacts = completed_contacts(HOUR, 23)
    sim.add_contacts(contacts)
    sim.add_contacts(completed_contacts(HOUR + timedelta(hours=1), 4, first_id=8_000_000_000))
    return contacts


def test_utc_with_a_literal_z() -> None:
    eastern = timezone(timedelta(hours=-5))
    assert utc_z(datetime(2026, 11, 27, 5, 0, 1, 123456, tzinfo=eastern)) == (
        "2026-11-27T10:00:01.123Z"
    )


def test_pages_by_skip_under_the_servers_cap(
    sim: CXoneSimulator, hour_of_contacts: list[dict[str, Any]]
) -> None:
    sim.page_cap = 5  # far below the `top` asked for
    fetched = fetch(sim.config())
    assert [r["contactId"] for r in fetched.records] == [c["contactId"] for c in hour_of_contacts]
    assert (fetched.pages, fetched.total_records) == (5, 23)
    assert skips(sim) == ["0", "5", "10", "15", "20"]
    for seen in sim.reporting_seen:
        assert seen["accept"] == "application/json"
        assert (seen["startDate"], seen["endDate"], seen["top"]) == (
            "2026-11-27T10:00:00.000Z",
            "2026-11-27T11:00:00.000Z",
            "10000",
        )


def test_older_versions_field_names_and_wrapper(
    sim: CXoneSimulator, hour_of_contacts: list[dict[str, Any]]
) -> None:
    sim.wrap_in_result_set = True
    fetched = fetch(sim.config(api_version="21.0"))
    first = fetched.records[0]
    assert first["contactStart"] == hour_of_contacts[0]["contactStartDate"]
    assert "contactStartDate" not in first and "endReason" not in first
    assert first["fromAddr"] == hour_of_contacts[0]["fromAddress"]
    assert len(fetched.records) == 23


def test_an_empty_window_is_a_204_and_no_records(sim: CXoneSimulator) -> None:
    fetched = fetch(sim.config())
    assert (fetched.records, fetched.pages, fetched.total_records) == ([], 1, 0)
    assert sim.statuses("GET", sim.reporting_path("30.0", COMPLETED)) == [204]


def test_429_without_retry_after_and_a_500_are_retried(
    sim: CXoneSimulator, hour_of_contacts: list[dict[str, Any]]
) -> None:
    sim.page_cap = 10
    path = sim.reporting_path("30.0", COMPLETED)
    sim.fail("GET", path, 429, times=2)
    sim.fail("GET", path, 500)
    fetched = fetch(sim.config())
    assert len(fetched.records) == 23
    assert sim.statuses("GET", path) == [429, 429, 500, 200, 200, 200]


def test_a_revoked_token_is_replaced_once_and_the_same_page_asked_again(
    sim: CXoneSimulator, hour_of_contacts: list[dict[str, Any]]
) -> None:
    sim.page_cap = 10
    sim.revoke_tokens_after(1)
    fetched = fetch(sim.config())
    assert [r["contactId"] for r in fetched.records] == [c["contactId"] for c in hour_of_contacts]
    assert sim.statuses("GET", sim.reporting_path("30.0", COMPLETED)) == [200, 401, 200, 200]
    assert skips(sim) == ["0", "10", "10", "20"]
    assert sim.grants == ["password", "password"]


def test_rate_limiting_beyond_the_deadline_gives_up_with_a_reason(
    sim: CXoneSimulator, hour_of_contacts: list[dict[str, Any]]
) -> None:
    sim.fail("GET", sim.reporting_path("30.0", COMPLETED), 429, times=1000)
    slow = RetryPolicy(deadline=0.5, base_delay=0.05, max_delay=0.1)
    with pytest.raises(CXoneRetriesExhausted, match="last: 429 Too Many Requests") as raised:
        fetch(dataclasses.replace(sim.config(), retry=slow))
    assert sim.access_key_secret not in str(raised.value)


def test_error_text_comes_from_ic_status_description(
    sim: CXoneSimulator, hour_of_contacts: list[dict[str, Any]]
) -> None:
    sim.reporting_allowed = False
    with pytest.raises(CXoneAPIError) as raised:
        fetch(sim.config())
    message = str(raised.value)
    assert raised.value.status == 403
    assert "answered 403: User does not have permission to access this report" in message
    assert "Reporting API permissions" in message
    assert "\n" not in message
    for secret in (sim.client_secret, sim.access_key_secret, *sim.tokens):
        assert secret not in message


def test_dates_without_z_are_what_cxone_refuses(sim: CXoneSimulator) -> None:
    with pytest.raises(CXoneAPIError, match="answered 400: Invalid startDate"):
        fetch(sim.config(), {"startDate": "2026-11-27T10:00:00", "endDate": WINDOW["endDate"]})


def test_an_unknown_api_version_names_the_setting(sim: CXoneSimulator) -> None:
    with pytest.raises(CXoneAPIError, match="check CXONE_API_VERSION"):
        asyncio.run(_get(sim.config(), "contacts/nowhere"))


async def _get(cfg: CXoneConfig, endpoint: str) -> Page:
    async with CXoneClient(cfg) as client:
        return await ReportingAPI(client).page(endpoint, "x", WINDOW, 0)


@pytest.mark.parametrize(
    ("page", "fetched", "largest", "last"),
    [
        (Page([], None, None), 10, 10, True),  # empty (a 204)
        (Page([{}] * 3, None, None), 13, 5, True),  # shorter than the server's cap
        (Page([{}] * 5, None, None), 10, 5, False),  # full page, nothing else known
        (Page([{}] * 3, None, None), 3, 0, False),  # first page: the cap is unknown yet
        (Page([{}] * 5, None, False), 10, 5, True),  # no _links.next
        (Page([{}] * 5, 10, True), 10, 5, True),  # totalRecords reached
        (Page([{}] * 5, 11, True), 10, 5, False),
    ],
)
def test_when_a_page_is_the_last(page: Page, fetched: int, largest: int, last: bool) -> None:
    assert last_page(page, fetched, largest) is last
