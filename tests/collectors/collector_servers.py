"""Real servers on 127.0.0.1 for the collector tests: an asyncssh SFTP server and an HTTP usage API.

Both run in a background thread, listen on a free port, inject faults on request, and are shut
down (with a bounded wait) when the test ends. This is a plain module and each test module
defines its own fixtures: a tests/collectors/conftest.py would shadow tests/conftest.py for the
tests that do `from conftest import ...`.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import asyncssh

from warehouse.store import Warehouse

SFTP_USER = "billing"


def new_warehouse(path: Path) -> Warehouse:
    warehouse = Warehouse(duckdb_path=path)
    warehouse.ensure_schema()
    return warehouse


def count(warehouse: Warehouse, sql: str, params: list | None = None) -> int:
    with warehouse.transaction() as tx:
        return tx.fetchall(sql, params)[0][0]


# -- SFTP ------------------------------------------------------------------------------------------


class SftpTestServer:
    """An SFTP server over TCP whose root is a temp folder, with hooks to misbehave on purpose."""

    def __init__(self, root: Path, password: str):
        self.root = root
        self.password = password
        self.host_key = asyncssh.generate_private_key("ssh-ed25519")
        self.client_key: asyncssh.SSHKey | None = None  # public key accepted for key auth
        self.drop_after: dict[str, int] = {}  # file name -> drop the connection once this many bytes were read
        self.on_list: list[Callable[[], None]] = []  # run before each directory listing (a writer at work)
        self.endless: set[str] = set()  # file names whose reads never reach an end (data past the listed size)
        self.endless_cap = 16 << 20  # ... until this many bytes were served, so a client that reads on still ends
        self.served: Counter[str] = Counter()  # file name -> bytes served by reads
        self.opens: Counter[str] = Counter()
        self.logins = 0
        self.port = 0
        self._conns: list[asyncssh.SSHServerConnection] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="sftp-test-server", daemon=True)

    def known_hosts_line(self, key: asyncssh.SSHKey | None = None) -> str:
        key = key or self.host_key
        return f"[127.0.0.1]:{self.port} {key.export_public_key().decode().strip()}\n"

    def start(self) -> SftpTestServer:
        self._thread.start()
        self._acceptor = asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=10)
        self.port = self._acceptor.get_port()
        return self

    async def _listen(self) -> asyncssh.SSHAcceptor:
        owner = self

        class Server(asyncssh.SSHServer):
            def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
                owner._conns.append(conn)

            def begin_auth(self, username: str) -> bool:
                return True

            def password_auth_supported(self) -> bool:
                return True

            def validate_password(self, username: str, password: str) -> bool:
                ok = username == SFTP_USER and password == owner.password
                owner.logins += ok
                return ok

            def public_key_auth_supported(self) -> bool:
                return owner.client_key is not None

            def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
                ok = owner.client_key is not None and key.public_data == owner.client_key.public_data
                owner.logins += ok
                return ok

        class Sftp(asyncssh.SFTPServer):
            def __init__(self, chan: asyncssh.SSHServerChannel):
                super().__init__(chan, chroot=str(owner.root).encode())

            async def scandir(self, path: bytes):
                for hook in owner.on_list:
                    hook()
                async for entry in super().scandir(path):
                    yield entry

            def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs):
                owner.opens[os.fsdecode(os.path.basename(path))] += 1
                return super().open(path, pflags, attrs)

            async def read(self, file_obj, offset: int, size: int) -> bytes:
                name = os.fsdecode(os.path.basename(file_obj.name))
                limit = owner.drop_after.get(name)
                if limit is not None and offset + size > limit:
                    del owner.drop_after[name]  # only the first attempt breaks
                    self.connection.abort()
                    await asyncio.sleep(10)  # never answer this read: the connection is gone
                data = super().read(file_obj, offset, size)
                if name in owner.endless and len(data) < size and owner.served[name] < owner.endless_cap:
                    data += b"9" * (size - len(data))  # the file "keeps growing" whatever was listed
                owner.served[name] += len(data)
                return data

        return await asyncssh.listen("127.0.0.1", 0, server_host_keys=[self.host_key], server_factory=Server,
                                     sftp_factory=Sftp, allow_scp=False, login_timeout=10)

    def stop(self) -> None:
        async def close() -> None:
            self._acceptor.close()
            for conn in self._conns:
                conn.abort()
            await asyncio.wait_for(self._acceptor.wait_closed(), 5)
            pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in pending:  # e.g. a read parked by drop_after
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)

        try:
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            if not self._thread.is_alive():
                self._loop.close()


# -- HTTP ------------------------------------------------------------------------------------------


class UsageApi:
    """A paginated usage API: /cursor, /page and /link serve the same events in pages.

    `faults` maps a page key (e.g. "cursor:after-10", "page:2", "link:3") to actions consumed one
    per request: "429" (Retry-After: 1), "500", "slow" (answers after the client's timeout).
    `broken_from` makes every request for that page key and later ones fail with 500 (a crash).
    """

    def __init__(self, token: str, events: list[dict], page_size: int = 10, slow_seconds: float = 1.0):
        self.token = token
        self.events = events
        self.page_size = page_size
        self.slow_seconds = slow_seconds
        self.faults: dict[str, list[str]] = {}
        self.link_base = ""  # next links are relative unless a test sets an origin here
        self.broken: set[str] = set()
        self.next_cursor: dict[str, str] = {}  # cursor page key -> the next cursor it answers (a cycle, say)
        self.huge: dict[str, tuple[int, bool]] = {}  # page key -> (body bytes, declare a Content-Length?)
        self.sent_bytes = 0  # body bytes of `huge` answers the client took before it hung up
        self.requests: list[tuple[float, str, str]] = []  # (arrival time, page key, outcome)
        self._lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args) -> None:  # keep test output quiet
                pass

            def do_GET(self) -> None:
                api._handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="usage-api", daemon=True)

    def keys(self, outcome: str = "200") -> list[str]:
        return [key for _, key, result in self.requests if result == outcome]

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        arrived = time.monotonic()
        url = urlsplit(req.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        style = url.path.strip("/")
        size = int(query.get("per_page", self.page_size))
        if style == "cursor":
            offset = int(query.get("cursor", "after-0").removeprefix("after-"))
            key = f"cursor:after-{offset}"
        elif style in ("page", "link"):
            page = int(query.get("page", "1"))
            offset, key = (page - 1) * size, f"{style}:{page}"
        else:
            return self._send(req, 404, {"error": "no such endpoint"}, key="?", arrived=arrived)
        if req.headers.get("Authorization") != f"Bearer {self.token}":
            return self._send(req, 401, {"error": "bad token"}, key=key, arrived=arrived)
        with self._lock:
            action = self.faults.get(key, []).pop(0) if self.faults.get(key) else None
        if key in self.broken:
            return self._send(req, 500, {"error": "down"}, key=key, arrived=arrived)
        if action == "429":
            return self._send(req, 429, {"error": "slow down"}, key=key, arrived=arrived,
                              headers={"Retry-After": "1"})
        if action == "500":
            return self._send(req, 500, {"error": "oops"}, key=key, arrived=arrived)
        if action == "slow":
            time.sleep(self.slow_seconds)
        if key in self.huge:
            return self._send_huge(req, key, arrived, *self.huge[key])
        chunk = self.events[offset:offset + size]
        more = offset + size < len(self.events)
        headers = {}
        if style == "cursor":
            body = {"data": chunk, "meta": {"next_cursor": self.next_cursor.get(
                key, f"after-{offset + size}" if more else None)}}
        elif style == "page":
            body = {"data": chunk, "page": page}
        else:
            body = {"data": chunk}
            if more:
                headers["Link"] = (f'<{self.link_base}/link?page={page + 1}&per_page={size}>; rel="next", '
                                   '</link?page=1>; rel="first"')
        self._send(req, 200, body, key=key, arrived=arrived, headers=headers,
                   outcome="slow" if action == "slow" else "200")

    def _send(self, req: BaseHTTPRequestHandler, status: int, body: dict, *, key: str, arrived: float,
              headers: dict | None = None, outcome: str | None = None) -> None:
        with self._lock:
            self.requests.append((arrived, key, outcome or str(status)))
            self.requests.sort()  # in arrival order, even when a slow answer finishes late
        data = json.dumps(body).encode()
        try:
            req.send_response(status)
            req.send_header("Content-Type", "application/json")
            req.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                req.send_header(name, value)
            req.end_headers()
            req.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test)

    def _send_huge(self, req: BaseHTTPRequestHandler, key: str, arrived: float, size: int, declared: bool) -> None:
        """A valid JSON page of `size` bytes (one long padding field), written 64 KiB at a time."""
        with self._lock:
            self.requests.append((arrived, key, "huge"))
        head, tail = b'{"data": [], "pad": "', b'"}'
        try:
            req.send_response(200)
            req.send_header("Content-Type", "application/json")
            if declared:
                req.send_header("Content-Length", str(size))
            req.end_headers()
            req.wfile.write(head)
            left = size - len(head) - len(tail)
            piece = b"x" * (64 << 10)
            while left > 0:
                req.wfile.write(piece[:left])
                with self._lock:
                    self.sent_bytes += min(left, len(piece))
                left -= len(piece)
            req.wfile.write(tail)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading

    def start(self) -> UsageApi:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=10)


def make_events(n: int, start: int = 1) -> list[dict]:
    # qty as JSON numbers with decimals: they must arrive as exact decimals, never floats
    return [{"id": f"ev-{i:04d}", "account": f"cust-{i % 3}", "sku": "api-calls", "qty": float(f"{i}.25"),
             "at": f"2024-05-{1 + i % 28:02d}T10:00:00Z", "extra": {"region": "eu"}} for i in range(start, start + n)]
