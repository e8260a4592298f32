"""The upload inbox as a person uses it: `billing upload FILE --source NAME`, safe names, size limits."""

from pathlib import Path

import duckdb
import pytest
import yaml

from billing.cli import EXIT_BLOCKED, main
from collectors.upload import UploadRefused, collect_inbox, deliver, safe_name
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
