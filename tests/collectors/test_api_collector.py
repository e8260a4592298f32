"""The API collector against a real HTTP server on 127.0.0.1 (no mocked client): every event once."""

from __future__ import annotations

import json
import logging
import os
import traceback
import tracemalloc
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from collector_servers import UsageApi, count, make_events, new_warehouse

import collectors.api as api_module
from collectors.api import ApiError, collect_api, read_checkpoint
from collectors.sources import SourceConfig, SourceConfigError, parse_sources
from normalize.load import load_pending
from warehouse.store import Warehouse

TOKEN_ENV = "TEST_USAGE_API_TOKEN"
STYLES = {
    "cursor": ("cursor", {"style": "cursor", "next_cursor_field": "meta.next_cursor"}),
    "page": ("page", {"style": "page", "page_size_param": "per_page", "page_size": 10}),
    "page-unsized": ("page", {"style": "page"}),
    "link": ("link", {"style": "link"}),
}
FIRST_KEY = {"cursor": "cursor:after-0", "page": "page:1", "page-unsized": "page:1", "link": "link:1"}
THIRD_KEY = {"cursor": "cursor:after-20", "page": "page:3", "page-unsized": "page:3", "link": "link:3"}


@pytest.fixture
def warehouse(tmp_path: Path) -> Warehouse:
    return new_warehouse(tmp_path / "w.duckdb")


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    return tmp_path / "landing"


@pytest.fixture
def usage_api() -> Iterator[UsageApi]:
    api = UsageApi(token="tok-" + os.urandom(8).hex(), events=make_events(25)).start()
    try:
        yield api
    finally:
        api.stop()


@pytest.fixture(autouse=True)
def token(usage_api: UsageApi, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(TOKEN_ENV, usage_api.token)
    return usage_api.token


def make_source(api: UsageApi, style: str, **connection) -> SourceConfig:
    path, pagination = STYLES[style]
    entry = {
        "name": "usage-api", "kind": "api", "format": "jsonl",
        "columns": {"event_id": "id", "customer_id": "account", "product_id": "sku", "quantity": "qty",
                    "occurred_at": "at"},
        "connection": {"url": f"{api.base}/{path}", "token_env": TOKEN_ENV, "pagination": pagination,
                       "timeout_seconds": 0.5, "max_retry_after_seconds": 2,
                       "retry": {"max_attempts": 4, "initial_seconds": 0.05, "max_seconds": 0.2}, **connection},
    }
    return parse_sources({"sources": [entry]}, base_dir=Path("."))["usage-api"]


def load_events(warehouse: Warehouse, source: SourceConfig) -> int:
    loads = list(load_pending(warehouse, {source.name: source.file_format}))
    assert all(x.status == "loaded" for x in loads), [x.error for x in loads]
    return count(warehouse, "SELECT count(*) FROM raw.events")


def distinct_ids(warehouse: Warehouse) -> int:
    return count(warehouse, "SELECT count(DISTINCT event_id) FROM raw.events")


@pytest.mark.parametrize("style", list(STYLES))
def test_each_pagination_style_collects_every_event_once(usage_api, warehouse, landing, style):
    source = make_source(usage_api, style)
    landed = collect_api(warehouse, landing, source)
    assert len(landed) == 3 and all(x.is_new for x in landed)
    assert load_events(warehouse, source) == 25 == distinct_ids(warehouse)
    assert read_checkpoint(warehouse, source.name) is not None

    # A second run re-reads only the page that may still grow: same bytes, nothing new.
    usage_api.requests.clear()
    again = collect_api(warehouse, landing, source)
    assert [x.is_new for x in again] == [False]
    assert usage_api.keys()[0] == THIRD_KEY[style]
    assert load_events(warehouse, source) == 25


@pytest.mark.parametrize("style", list(STYLES))
def test_events_appended_later_are_collected_without_gap(usage_api, warehouse, landing, style):
    source = make_source(usage_api, style)
    collect_api(warehouse, landing, source)
    usage_api.events += make_events(7, start=26)  # the API grows: page 3 fills up, page 4 appears
    collect_api(warehouse, landing, source)
    assert load_events(warehouse, source) == 32 == distinct_ids(warehouse)
    assert count(warehouse, "SELECT count(*) FROM raw.duplicates") == 5  # page 3's first five, read twice


def test_429_retry_after_500s_and_a_slow_answer_are_ridden_out(usage_api, warehouse, landing):
    source = make_source(usage_api, "cursor")
    usage_api.faults = {"cursor:after-0": ["slow"], "cursor:after-10": ["429"],
                        "cursor:after-20": ["500", "500"]}
    landed = collect_api(warehouse, landing, source)
    assert len(landed) == 3
    outcomes = [(key, outcome) for _, key, outcome in usage_api.requests]
    assert outcomes == [("cursor:after-0", "slow"), ("cursor:after-0", "200"),
                        ("cursor:after-10", "429"), ("cursor:after-10", "200"),
                        ("cursor:after-20", "500"), ("cursor:after-20", "500"), ("cursor:after-20", "200")]
    times = {i: t for i, (t, _, _) in enumerate(usage_api.requests)}
    assert times[3] - times[2] >= 0.95  # Retry-After: 1 was honoured
    assert load_events(warehouse, source) == 25 == distinct_ids(warehouse)


def test_retry_after_is_capped(usage_api, warehouse, landing, monkeypatch):
    source = make_source(usage_api, "page", max_retry_after_seconds=0.1)
    usage_api.faults = {"page:1": ["429"]}
    collect_api(warehouse, landing, source)
    times = [t for t, _, _ in usage_api.requests]
    assert times[1] - times[0] < 0.9


@pytest.mark.parametrize("style", list(STYLES))
def test_a_run_that_dies_between_pages_resumes_from_the_checkpoint(usage_api, warehouse, landing, style):
    source = make_source(usage_api, style, retry={"max_attempts": 2, "initial_seconds": 0.05})
    usage_api.broken = {THIRD_KEY[style]}  # the API goes down after two pages
    with pytest.raises(ApiError, match="source 'usage-api'.*failed 2 time.*checkpoint is kept"):
        collect_api(warehouse, landing, source)
    assert count(warehouse, "SELECT count(*) FROM raw.landed_files") == 2

    usage_api.broken = set()
    usage_api.requests.clear()
    collect_api(warehouse, landing, source)
    assert FIRST_KEY[style] not in usage_api.keys()  # resumed, not restarted
    assert load_events(warehouse, source) == 25 == distinct_ids(warehouse)


@pytest.mark.parametrize("when", ["before landing", "after landing"])
def test_a_crash_around_landing_loses_nothing_and_doubles_nothing(usage_api, warehouse, landing, monkeypatch, when):
    source = make_source(usage_api, "cursor")
    real_land = api_module.land_file
    calls = []

    def crashing_land(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2 and when == "before landing":
            raise RuntimeError("process killed")
        landed = real_land(*args, **kwargs)
        if len(calls) == 2:
            raise RuntimeError("process killed")
        return landed

    monkeypatch.setattr(api_module, "land_file", crashing_land)
    with pytest.raises(RuntimeError, match="process killed"):
        collect_api(warehouse, landing, source)
    expected = {"before landing": {"cursor": "after-10"}, "after landing": {"cursor": "after-20"}}[when]
    assert read_checkpoint(warehouse, source.name) == expected  # moved only with a durably landed page

    monkeypatch.setattr(api_module, "land_file", real_land)
    collect_api(warehouse, landing, source)
    assert load_events(warehouse, source) == 25 == distinct_ids(warehouse)
    assert count(warehouse, "SELECT count(*) FROM raw.duplicates") == 0


def test_quantities_stay_exact_decimals(usage_api, warehouse, landing):
    usage_api.events = [{**e, "qty": q} for e, q in zip(make_events(3), (0.1, 1e-9, 1234567890.123), strict=True)]
    source = make_source(usage_api, "cursor")
    landed = collect_api(warehouse, landing, source)
    lines = [json.loads(line) for line in landed[0].landing_path.read_text().splitlines()]
    assert [x["qty"] for x in lines] == ["0.1", "1E-9", "1234567890.123"]
    assert lines[0]["extra"] == '{"region":"eu"}'  # nested values kept as JSON text
    load_events(warehouse, source)
    with warehouse.transaction() as tx:
        got = sorted(r[0] for r in tx.fetchall("SELECT quantity FROM raw.events"))
    assert got == [Decimal("0.000000001"), Decimal("0.1"), Decimal("1234567890.123")]


def test_refused_credentials_fail_at_once_without_the_token(usage_api, warehouse, landing, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    bad = "bad-token-123456"
    monkeypatch.setenv(TOKEN_ENV, bad)
    source = make_source(usage_api, "cursor")
    with pytest.raises(ApiError) as err:
        collect_api(warehouse, landing, source)
    assert "401" in str(err.value) and f"${TOKEN_ENV}" in str(err.value)
    assert len(usage_api.requests) == 1  # a 401 is not retried
    text = "".join(traceback.format_exception(err.value)) + caplog.text
    assert bad not in text and usage_api.token not in text


def test_api_key_header_auth(usage_api, warehouse, landing, monkeypatch):
    # The test API only knows bearer tokens, so sending the key as "Authorization" exercises the header path.
    monkeypatch.setenv("TEST_API_KEY", f"Bearer {usage_api.token}")
    source = make_source(usage_api, "page", token_env=None, api_key_env="TEST_API_KEY",
                         api_key_header="Authorization")
    assert len(collect_api(warehouse, landing, source)) == 3


def test_persistent_timeouts_give_up_with_a_clear_error(usage_api, warehouse, landing):
    source = make_source(usage_api, "page", timeout_seconds=0.2,
                         retry={"max_attempts": 2, "initial_seconds": 0.05})
    usage_api.slow_seconds = 0.5
    usage_api.faults = {"page:1": ["slow", "slow"]}
    with pytest.raises(ApiError, match=r"failed 2 time\(s\), last: no answer within 0.2s"):
        collect_api(warehouse, landing, source)
    assert count(warehouse, "SELECT count(*) FROM raw.landed_files") == 0


def test_a_next_link_to_another_host_is_refused(usage_api, warehouse, landing, monkeypatch):
    source = make_source(usage_api, "link")
    elsewhere = usage_api.base.replace("127.0.0.1", "localhost")  # another origin for the same server
    monkeypatch.setattr(usage_api, "link_base", elsewhere)
    with pytest.raises(ApiError, match="next-page link http://localhost:.* leaves 127.0.0.1; refusing"):
        collect_api(warehouse, landing, source)
    assert len(usage_api.requests) == 1


def test_a_cursor_that_cycles_fails_the_source_at_once(usage_api, warehouse, landing):
    usage_api.next_cursor["cursor:after-20"] = "after-10"  # after-10 -> after-20 -> after-10 -> ...
    source = make_source(usage_api, "cursor", max_pages=50)
    with pytest.raises(ApiError, match=r"usage-api.*cursor 'after-10'.*already read.*cycles"):
        collect_api(warehouse, landing, source)
    assert usage_api.keys() == ["cursor:after-0", "cursor:after-10", "cursor:after-20"]
    assert load_events(warehouse, source) == 25  # what was landed before the cycle is kept


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "no-length"])
def test_a_response_over_the_size_limit_fails_the_source_with_memory_bounded(usage_api, warehouse, landing,
                                                                             declared):
    limit = 1 << 20
    usage_api.huge["page:2"] = (48 << 20, declared)
    source = make_source(usage_api, "page", max_response_bytes=limit)
    tracemalloc.start()
    try:
        with pytest.raises(ApiError, match=r"usage-api.*page=2.*limit of 1,048,576 bytes"
                                           r" \(connection.max_response_bytes\)"):
            collect_api(warehouse, landing, source)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    print(f"declared={declared}: peak Python memory {peak / 2**20:.1f} MiB, {usage_api.sent_bytes >> 20} MiB sent")
    assert usage_api.keys("huge") == ["page:2"]  # not retried: a retry cannot make it smaller
    assert peak < 8 << 20 and usage_api.sent_bytes < 24 << 20  # of 48 MiB
    assert read_checkpoint(warehouse, "usage-api") == {"page": 2}  # page 1 landed; the next run retries page 2


def test_the_response_size_limit_has_a_default_and_must_be_positive(usage_api):
    assert make_source(usage_api, "page").connection.max_response_bytes == 32 << 20
    with pytest.raises(SourceConfigError, match="max_response_bytes: must be at least 1"):
        make_source(usage_api, "page", max_response_bytes=0)
