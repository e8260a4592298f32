"""The upload inbox as a person uses it: `billing upload FILE --source NAME`, safe names, size limits."""

import io
import os
import time
from pathlib import Path

import duckdb
import pytest
import yaml

from billing.cli import EXIT_BLOCKED, main
from collectors.landing import FileChanged, land_stream
from collectors.upload import UploadRefused, collect_inbox, deliver, safe_name
from normalize.load import load_pending
from warehouse.store import Warehouse


def said(capsys) -> str:
    return " ".join(capsys.readouterr().out.split())  # rich wraps long lines


CSV = "event_id,customer_id,product_id,quantity,occurred_at\ne1,C1,API_CALLS,5,2026-10-01T00:00:00Z\n"


@pytest.mark.parametrize(("name", "expected"), [
    ("../../x.csv", "x.csv"),
    ("..\\..\\windows\\x.csv", "x.csv"),
    ("/etc/passwd", "passwd"),
    (".hidden.csv", "hidden.csv"),
    ("usage\x00\n;rm -rf.csv", "usage_rm -rf.csv"),
    ("usage 2026-10 (final).csv.gz", "usage 2026-10 (final).csv.gz"),
])
def test_names_are_reduced_to_a_safe_last_component(name, expected):
    assert safe_name(name) == expected


@pytest.mark.parametrize("name", ["..", "../", "", "...", "usage.csv.part"])
def test_unusable_names_are_refused(name):
    with pytest.raises(UploadRefused, match="not a usable file name"):
        safe_name(name)


def test_delivered_files_stay_inside_the_inbox_and_never_overwrite(tmp_path):
    inbox = tmp_path / "inbox"
    source = tmp_path / "elsewhere" / "usage.csv"
    source.parent.mkdir()
    source.write_text(CSV)
    first = deliver(source, inbox)
    second = deliver(source, inbox)
    assert first == inbox / "usage.csv" and second == inbox / "usage (2).csv"
    assert all(p.resolve().is_relative_to(inbox.resolve()) for p in inbox.iterdir())
    assert not list(inbox.glob(".*"))  # no partial copy left behind


def test_a_file_over_the_limit_is_refused_by_upload_and_set_aside_by_the_inbox(tmp_path):
    big = tmp_path / "big.csv"
    big.write_text(CSV * 10)
    with pytest.raises(UploadRefused, match=r"limit of 100 bytes.*max_bytes"):
        deliver(big, tmp_path / "inbox", max_bytes=100)

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "big.csv").write_text(CSV * 10)
    (inbox / "small.csv").write_text(CSV)
    refused = []
    warehouse = Warehouse(duckdb_path=tmp_path / "w.duckdb")
    warehouse.ensure_schema()
    landed = list(collect_inbox(warehouse, inbox, tmp_path / "landing", max_bytes=100,
                                on_refused=lambda path, why: refused.append((path, why))))
    assert [item.original_name for item in landed] == ["small.csv"]
    kept = inbox / "refused" / "big.csv"
    assert refused == [(kept, refused[0][1])] and "limit of 100 bytes" in refused[0][1]
    assert kept.read_text() == CSV * 10  # nothing lost: the file is kept, with why beside it
    assert "limit of 100 bytes" in (inbox / "refused" / "big.csv.reason.txt").read_text()


def test_billing_upload_to_a_named_source_lands_under_that_source(billing_env, tmp_path, capsys):
    partners = billing_env / "partners-inbox"
    sources = tmp_path / "sources.yaml"
    sources.write_text(yaml.safe_dump({"sources": [
        {"name": "partners", "kind": "upload", "connection": {"inbox": str(partners)}},
        {"name": "acme", "kind": "sftp", "connection": {
            "host": "127.0.0.1", "username": "u", "remote_dir": "/", "password_env": "X",
            "host_key": "ssh-ed25519 AAAA"}},
    ]}))
    config = tmp_path / "billing.yaml"
    config.write_text(yaml.safe_dump({"sources": str(sources)}))
    usage = tmp_path / "oct.csv"
    usage.write_text(CSV)

    assert main(["--config", str(config), "upload", str(usage), "--source", "partners"]) == 0
    assert (partners / "oct.csv").read_text() == CSV
    assert main(["--config", str(config), "upload", str(usage), "--source", "acme"]) == 2
    assert "is a sftp source" in said(capsys)
    assert main(["--config", str(config), "upload", str(usage), "--source", "nobody"]) == 2
    assert "upload sources: upload, partners" in said(capsys)

    sources.write_text(yaml.safe_dump({"sources": [  # bill without the unreachable sftp source
        {"name": "partners", "kind": "upload", "connection": {"inbox": str(partners)}}]}))
    # C2, C4 and C5 have contracts and no usage here: missed customers, a blocking check
    assert main(["--config", str(config), "run", "--month", "2026-10"]) == EXIT_BLOCKED
    con = duckdb.connect(str(billing_env / "warehouse.duckdb"))
    assert con.execute("SELECT source, original_name, rows_loaded FROM raw.landed_files").fetchall() \
        == [("partners", "oct.csv", 1)]
    assert not (partners / "oct.csv").exists() and (partners / "processed" / "oct.csv").exists()


def test_upload_of_a_missing_file_is_a_clear_error(billing_env, capsys):
    assert main(["upload", str(Path(billing_env) / "nope.csv")]) == 1
    assert "nope.csv is not a file" in said(capsys)


def new_warehouse(tmp_path: Path) -> Warehouse:
    warehouse = Warehouse(duckdb_path=tmp_path / "w.duckdb")
    warehouse.ensure_schema()
    return warehouse


def backdate(path: Path, seconds: float = 3600) -> None:
    """As if the file was last written `seconds` ago (a file dropped earlier, long complete)."""
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)


def must_not_wait(seconds: float) -> None:
    raise AssertionError(f"waited {seconds}s for files that settled long ago")


def test_a_file_still_being_written_is_left_in_the_inbox_until_it_stops_changing(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    usage = inbox / "usage.csv"
    rows = [f"e{i},C1,API_CALLS,1,2026-10-01T00:00:00Z\n" for i in range(4000)]
    usage.write_text(CSV.splitlines(keepends=True)[0] + "".join(rows[:710]))
    written = 710

    def writer_at_work(seconds: float) -> None:  # while the collector watches the file, its writer goes on
        nonlocal written
        with usage.open("a") as out:
            out.write("".join(rows[written:written + 500]))
        written += 500

    warehouse, landing = new_warehouse(tmp_path), tmp_path / "landing"
    waiting = []
    assert list(collect_inbox(warehouse, inbox, landing, settle_seconds=30, sleep=writer_at_work,
                              on_waiting=lambda path, why: waiting.append((path, why)))) == []
    assert waiting == [(usage, waiting[0][1])] and "still being written" in waiting[0][1]
    assert usage.exists() and not landing.exists()  # nothing landed, nothing moved

    with usage.open("a") as out:  # the writer finishes; a later poll finds it unchanged since
        out.write("".join(rows[written:]))
    backdate(usage, 60)
    [landed] = collect_inbox(warehouse, inbox, landing, settle_seconds=30, sleep=must_not_wait)
    assert [f.rows_loaded for f in load_pending(warehouse)] == [4000]
    assert not usage.exists() and (inbox / "processed" / "usage.csv").exists()


def test_a_fresh_file_that_holds_still_is_taken_after_one_bounded_wait(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "old.csv").write_text(CSV)
    backdate(inbox / "old.csv")
    (inbox / "new.csv").write_text(CSV.replace("e1", "e2"))
    waits = []
    landed = list(collect_inbox(new_warehouse(tmp_path), inbox, tmp_path / "landing", settle_seconds=30,
                                sleep=waits.append))
    assert sorted(item.original_name for item in landed) == ["new.csv", "old.csv"]
    assert len(waits) == 1 and 0 < waits[0] <= 30  # one wait per poll, for the fresh file, at most settle_seconds


def test_a_file_that_changes_while_it_is_copied_is_not_landed(tmp_path):
    warehouse, landing = new_warehouse(tmp_path), tmp_path / "landing"
    with pytest.raises(FileChanged):
        land_stream(warehouse, landing, io.BytesIO(CSV.encode()), source="upload", collector="upload",
                    original_name="usage.csv", unchanged=lambda: False)
    assert not [p for p in landing.rglob("*") if p.is_file()]
    with warehouse.transaction() as tx:
        assert tx.fetchall("SELECT count(*) FROM raw.landed_files") == [(0,)]


def test_links_and_special_files_in_an_inbox_are_refused_never_read(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    secret = tmp_path / "secret.csv"
    secret.write_text("event_id,customer_id,product_id,quantity,occurred_at\nhunter2,C1,API_CALLS,1,2026-10-01T00:00:00Z\n")
    (inbox / "usage.csv").symlink_to(secret)
    (inbox / "gone.csv").symlink_to(tmp_path / "nowhere.csv")
    (inbox / "home").symlink_to(tmp_path)  # a link to a folder
    (inbox / "loop.csv").symlink_to(inbox / "loop.csv")
    os.mkfifo(inbox / "pipe.csv")  # opening it would block until someone writes
    (inbox / "real.csv").write_text(CSV)
    for entry in inbox.iterdir():
        backdate(entry)
    refused = {}
    landed = list(collect_inbox(new_warehouse(tmp_path), inbox, tmp_path / "landing", sleep=must_not_wait,
                                on_refused=lambda path, why: refused.setdefault(path.name, why)))

    assert [item.original_name for item in landed] == ["real.csv"]
    assert sorted(refused) == ["gone.csv", "home", "loop.csv", "pipe.csv", "usage.csv"]
    assert all("symbolic link" in refused[name] and "never followed" in refused[name]
               for name in ("usage.csv", "gone.csv", "home", "loop.csv"))
    assert "named pipe (FIFO), not a file" in refused["pipe.csv"]
    assert not any(b"hunter2" in p.read_bytes() for p in (tmp_path / "landing").rglob("*") if p.is_file())
    kept = inbox / "refused" / "usage.csv"
    assert kept.is_symlink() and os.readlink(kept) == str(secret)  # the link itself was moved, nothing else
    assert "hunter2" in secret.read_text()
    assert "symbolic link" in (inbox / "refused" / "usage.csv.reason.txt").read_text()


def test_a_refused_link_is_reported_by_billing_run_with_its_name_and_why(billing_env, tmp_path, capsys):
    secret = tmp_path / "secret.txt"
    secret.write_text("not for billing\n")
    (billing_env / "inbox" / "usage.csv").symlink_to(secret)
    main(["run", "--month", "2026-10"])
    out = said(capsys)
    assert "refused" in out and "usage.csv: is a symbolic link" in out
    con = duckdb.connect(str(billing_env / "warehouse.duckdb"))
    assert con.execute("SELECT count(*) FROM raw.landed_files").fetchall() == [(0,)]


def test_files_stored_side_by_side_are_registered_in_order_and_the_same_bytes_kept_once(tmp_path, monkeypatch):
    # collect_inbox copies files in threads (collectors.upload.STORE_THREADS) and registers them in name
    # order; two deliveries of the same bytes, stored at the same time, keep one file and two receipts.
    import collectors.upload as upload

    monkeypatch.setattr(upload, "STORE_THREADS", 3)
    inbox, landing = tmp_path / "inbox", tmp_path / "landing"
    inbox.mkdir()
    bodies = {f"u{i}.csv": CSV.replace("e1", f"e{i}") for i in range(6)}
    bodies["u6.csv"] = bodies["u2.csv"]  # the same bytes twice
    for name, body in bodies.items():
        (inbox / name).write_text(body)
        backdate(inbox / name)
    warehouse = new_warehouse(tmp_path)
    landed = list(collect_inbox(warehouse, inbox, landing, sleep=must_not_wait))
    assert [item.original_name for item in landed] == sorted(bodies)
    assert [item.is_new for item in landed] == [True] * 6 + [False]
    assert landed[6].landing_path == landed[2].landing_path
    assert len([p for p in landing.rglob("*") if p.is_file()]) == 6  # no temporary file left either
    assert sorted(p.name for p in (inbox / "processed").iterdir()) == sorted(bodies)
    with warehouse.transaction() as tx:
        assert tx.fetchall("SELECT count(*) FROM raw.file_receipts") == [(7,)]
        assert [r[0] for r in tx.fetchall("SELECT original_name FROM raw.landed_files ORDER BY received_at")] \
            == sorted(bodies)[:6]
