"""The observer's HTTP server (aiohttp): the page, its event stream (SSE) and two actions.

One NATS connection and one subscription feed every browser: the tree follower
(``treestate``), the stats poller (``actorstats``) and the directory reader push into one
pump, which renders the changed fragments once and queues them to each connected page.

Who may look: whoever has the token printed at start (docs/observability.md, "Observer").
``/?token=...`` sets a session cookie (HttpOnly, SameSite=Strict) and redirects; every other
request needs the cookie; a POST also needs the page's CSRF token in a header and, when the
browser sends one, an Origin of this server. Every refusal is answered with a clear status,
counted in ``refused`` and logged at a bounded rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any, Final

from aiohttp import web

from rebeam import _subjects
from rebeam._management_protocol import MAX_PATH_CHARS, parse_reply
from rebeam._ratelog import RateLog
from rebeam.events import LifecycleEvent
from rebeam.observe import page
from rebeam.observe.actorstats import StatsPoller, status_of
from rebeam.observe.directory import Directory
from rebeam.observe.treestate import NoTree, TreeFollower
from rebeam.pids import Pid

__all__ = ["Observer"]

log = logging.getLogger("rebeam.observe")

MAX_BODY: Final = 4096  # an action's body is a path
MAX_LINE: Final = 8190  # request line and each header
MAX_CLIENTS: Final = 32  # pages streaming at once
QUEUE: Final = 256  # messages waiting for one page; a page that falls behind is cut off
PUSH_EVERY: Final = 0.2  # the tree's rows are sent at most this often
HEARTBEAT: Final = 15.0
ACTION_TIMEOUT: Final = 30.0
STOP_TIMEOUT: Final = 5.0
# Only this server's script and style apply to the page, whatever a tree's text contains
# (it is escaped too).
CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; "
    "frame-ancestors 'none'; form-action 'none'"
)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
STATIC: Final = {"observer.js": "text/javascript", "observer.css": "text/css"}


class _HttpErrors(logging.Filter):
    """aiohttp logs a request it could not parse (a header too long, not HTTP at all) with
    its traceback: count it and say it in one line at a bounded rate instead."""

    def __init__(self, refused: Counter[str], ratelog: RateLog) -> None:
        super().__init__()
        self.refused = refused
        self.ratelog = ratelog

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            self.refused["malformed_http"] += 1
            detail = " ".join(str(exc).split())[:120]
            self.ratelog.warning("refused a malformed HTTP request", detail)
            return False
        return True


def _sse(kind: str, data: Any) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class Observer:
    """Serves one namespace's tree to browsers; ``start`` then ``stop``."""

    def __init__(self, nc: Any, requester: Pid, namespace: str, *, title: str) -> None:
        self.nc = nc
        self.requester = requester
        self.namespace = namespace
        self.title = title
        self.token = secrets.token_urlsafe(24)
        self._session = secrets.token_urlsafe(32)
        self._csrf = secrets.token_urlsafe(24)
        self.refused: Counter[str] = Counter()
        self._ratelog = RateLog(log, "observer")
        self._http_errors = _HttpErrors(self.refused, self._ratelog)
        self.follower = TreeFollower(
            nc, requester, namespace, on_event=self._on_event, on_error=self._on_tree_error
        )
        self.poller = StatsPoller(nc, self._targets)
        self.directory = Directory(nc.jetstream(), namespace)
        self._clients: set[asyncio.Queue[bytes | None]] = set()
        # Whether the pages show why the tree cannot be read: only then does a tree read
        # again clear their notice, which otherwise says how the user's last action went.
        self._tree_error_shown = False
        # Names are shown with their children's places: sent again when either changed.
        self._directory_sent = ""
        self._tasks: list[asyncio.Task[Any]] = []
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.cookie = "rebeam_observer"

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self, host: str, port: int) -> None:
        """Read the tree (raises NoTree), then listen on ``host:port`` (0: any free port)."""
        await self.follower.start()
        logging.getLogger("aiohttp.server").addFilter(self._http_errors)
        app = web.Application(middlewares=[self._guard], client_max_size=MAX_BODY)
        app.add_routes(
            [
                web.get("/", self._page),
                web.get("/events", self._events),
                web.get("/static/{name}", self._static),
                web.get("/api/status", self._status),
                web.get("/api/counters", self._counters),
                web.post("/api/{op}", self._action),
            ]
        )
        self._runner = web.AppRunner(
            app, access_log=None, max_line_size=MAX_LINE, max_field_size=MAX_LINE
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        self.cookie = f"rebeam_observer_{self.port}"  # one per observer on a host
        loop = asyncio.get_running_loop()
        for job in (self.follower.run(), self.poller.run(), self.directory.run(), self._pump()):
            self._tasks.append(loop.create_task(job))

    async def stop(self) -> None:
        """Stop within a bounded time, even if a task lost its cancellation in a NATS
        request (see TreeFollower.run): it is waited for STOP_TIMEOUT at most."""
        await self.follower.stop()
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT)
        for queue in self._clients:
            _offer(queue, None)
        if self._runner is not None:
            await self._runner.cleanup()
        logging.getLogger("aiohttp.server").removeFilter(self._http_errors)

    def _targets(self) -> list[tuple[str, str]]:
        if not self._clients:
            return []  # nobody looks: no stats requests
        return [
            (str(child["path"]), str(child["pid"]))
            for child in self.follower.state.children()
            if child.get("pid") and child.get("state") == "running"
        ]

    # -- authorization -------------------------------------------------------------------

    def _refuse(self, why: str, status: int, sentence: str, request: web.Request) -> web.Response:
        self.refused[why] += 1
        self._ratelog.warning(f"refused a request: {why}", f"{request.method} {request.path}")
        return web.json_response({"error": sentence, "code": why}, status=status)

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/static/"):
            return await handler(request)  # the script and the style: nothing secret
        token = request.query.get("token")
        if token is not None:
            if not secrets.compare_digest(token.encode(), self.token.encode()):
                return self._refuse("bad_token", 403, "this token is not the one printed", request)
            response = web.HTTPSeeOther("/")
            response.set_cookie(
                self.cookie, self._session, httponly=True, samesite="Strict", path="/"
            )
            return response
        cookie = request.cookies.get(self.cookie, "")
        if not secrets.compare_digest(cookie.encode(), self._session.encode()):
            sentence = "open the URL with ?token=... that `rebeam observe` printed"
            return self._refuse("no_token", 403, sentence, request)
        if request.method == "POST":
            header = request.headers.get("X-CSRF-Token", "")
            origin = request.headers.get("Origin")
            if not secrets.compare_digest(header.encode(), self._csrf.encode()) or (
                origin is not None and origin != f"{request.scheme}://{request.host}"
            ):
                return self._refuse("csrf", 403, "an action must come from the page", request)
        return await handler(request)

    # -- the page and its stream ---------------------------------------------------------

    async def _page(self, request: web.Request) -> web.Response:
        state = self.follower.state
        html = page.render_page(
            title=self.title,
            roots=state.roots,
            stats=self.poller.latest,
            timeline=list(state.timeline),
            directory=self.directory.latest,
            csrf=self._csrf,
            places=state.places(),
        )
        return web.Response(
            text=html,
            content_type="text/html",
            headers={"Cache-Control": "no-store", "Content-Security-Policy": CSP},
        )

    async def _static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC:
            return self._refuse("not_found", 404, f"no static file {name[:80]!r}", request)
        text = resources.files("rebeam.observe").joinpath("static", name).read_text()
        return web.Response(text=text, content_type=STATIC[name])

    async def _events(self, request: web.Request) -> web.StreamResponse:
        if len(self._clients) >= MAX_CLIENTS:
            return self._refuse("busy", 503, f"{MAX_CLIENTS} pages are open already", request)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
        )
        await response.prepare(request)
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUE)
        for first in self._full():
            _offer(queue, first)
        self._clients.add(queue)
        try:
            await _stream(response, queue)
        except ConnectionResetError:
            pass  # the page went away
        finally:
            self._clients.discard(queue)
        return response

    def _full(self) -> list[bytes]:
        """What a page that (re)connects is sent first: everything, as it is now."""
        state = self.follower.state
        timeline = "".join(page.render_event(e) for e in reversed(state.timeline))
        return [
            _sse("rows", page.render_rows(state.roots, self.poller.latest)),
            _sse("timeline", timeline),
            _sse("directory", self._directory_html()),
            _sse("notice", self.follower.error or ""),
        ]

    def _directory_html(self) -> str:
        return page.render_directory(self.directory.latest, self.follower.state.places())

    def _broadcast(self, message: bytes) -> None:
        for queue in list(self._clients):
            if not _offer(queue, message):
                self._clients.discard(queue)  # fell behind: it reconnects and starts afresh
                self.refused["slow_page"] += 1
                with contextlib.suppress(asyncio.QueueFull):
                    queue.get_nowait()
                    queue.put_nowait(None)

    async def _on_event(self, event: LifecycleEvent) -> None:
        self._broadcast(_sse("event", page.render_event(event.model_dump(mode="json"))))

    def _on_tree_error(self, exc: NoTree) -> None:
        self._tree_error_shown = True
        self._broadcast(_sse("notice", str(exc)))

    async def _pump(self) -> None:
        """Send the rows when the tree changed, the stats and the directory when they did:
        at most every PUSH_EVERY seconds, rendered once for every page."""
        sources = (self.follower.changed, self.poller.changed, self.directory.changed)
        while True:
            waits = [asyncio.ensure_future(flag.wait()) for flag in sources]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiting in waits:
                    waiting.cancel()
            await asyncio.sleep(PUSH_EVERY)  # gathers a burst into one push
            self._push_changes()

    def _push_changes(self) -> None:
        if not self._clients:  # a page that connects is sent everything anyway
            for flag in (self.follower.changed, self.poller.changed, self.directory.changed):
                flag.clear()
            self._tree_error_shown = self.follower.error is not None
            return
        tree_changed = self.follower.changed.is_set()
        if tree_changed:
            self.follower.changed.clear()
            state = self.follower.state
            self._broadcast(_sse("rows", page.render_rows(state.roots, self.poller.latest)))
            if self.follower.error is None and self._tree_error_shown:
                self._tree_error_shown = False
                self._broadcast(_sse("notice", ""))
        if self.poller.changed.is_set():
            self.poller.changed.clear()
            shown = {path: s.public() for path, s in self.poller.latest.items()}
            self._broadcast(_sse("stats", shown))
        if self.directory.changed.is_set() or tree_changed:
            self.directory.changed.clear()
            html = self._directory_html()
            if html != self._directory_sent:
                self._directory_sent = html
                self._broadcast(_sse("directory", html))

    # -- actions ---------------------------------------------------------------------------

    def _child(self, path: Any) -> dict[str, Any] | None:
        if not isinstance(path, str) or not 0 < len(path) <= MAX_PATH_CHARS:
            return None
        node = self.follower.state.node(path)
        return node if node is not None and "name" in node else None

    async def _counters(self, request: web.Request) -> web.Response:
        """What the observer itself counted: refusals by kind, pages open, failed polls."""
        return web.json_response(
            {
                "refused": dict(self.refused),
                "pages": len(self._clients),
                "stats_failures": self.poller.failures,
                "directory_failures": self.directory.failures,
            }
        )

    async def _status(self, request: web.Request) -> web.Response:
        path = request.query.get("path")
        child = self._child(path)
        if child is None:
            return self._refuse("bad_request", 400, f"no child {str(path)[:100]!r}", request)
        if not child.get("pid"):
            return web.json_response({"status": f"{path} is not running"})
        running = child.get("state") == "running"
        summary = await status_of(self.nc, str(child["pid"]), running=running)
        return web.json_response({"status": summary})

    async def _action(self, request: web.Request) -> web.Response:
        op = request.match_info["op"]
        if op not in ("restart", "terminate"):
            return self._refuse("not_found", 404, f"no action {op[:40]!r}", request)
        if (request.content_length or 0) > MAX_BODY:
            return self._refuse("too_large", 413, f"a body is at most {MAX_BODY} bytes", request)
        try:
            body = json.loads(await request.read())
        except (ValueError, web.HTTPRequestEntityTooLarge):
            return self._refuse("bad_request", 400, "the body is a JSON object {path}", request)
        path = body.get("path") if isinstance(body, dict) else None
        child = self._child(path)
        if child is None:
            return self._refuse("bad_request", 400, f"no child {str(path)[:100]!r}", request)
        parent = self.follower.state.node(str(path).rpartition("/")[0]) or {}
        if op == "restart" and parent.get("strategy") == "simple_one_for_one":
            # Terminating would remove it for good: its supervisor cannot restart it by name.
            sentence = f"{path} is a dynamic child: it can be terminated, not restarted"
            return self._refuse("dynamic_child", 409, sentence, request)
        log.info("%s %s, asked from the page", op, path)
        steps = ["terminate-child"]
        if op == "restart":
            # A child the supervisor is not running is only started again.
            running = child.get("state") not in ("undefined", "terminated")
            steps = ["terminate-child", "restart-child"] if running else ["restart-child"]
        for step in steps:
            reply = await self._manage(step, str(path))
            if "error" in reply:
                return web.json_response(reply, status=409)
        self.follower.mark_stale()  # show the outcome without waiting for its events
        return web.json_response({"ok": f"{op} {path}: done"})

    async def _manage(self, operation: str, path: str) -> dict[str, Any]:
        subject = _subjects.control(self.namespace, operation, self.requester)
        try:
            msg = await self.nc.request(
                subject, json.dumps({"path": path}).encode(), ACTION_TIMEOUT
            )
            reply = parse_reply(msg.data)
        except Exception as exc:  # no backend, a timeout, an unusable answer: say it
            return {"error": f"{operation} {path}: no usable answer ({type(exc).__name__})"}
        if "error" in reply:
            return {"error": f"{operation} {path}: {reply['error']}", "code": reply["code"]}
        return reply


def _offer(queue: asyncio.Queue[bytes | None], message: bytes | None) -> bool:
    try:
        queue.put_nowait(message)
    except asyncio.QueueFull:
        return False
    return True


async def _stream(response: web.StreamResponse, queue: asyncio.Queue[bytes | None]) -> None:
    """Write what is queued for one page until None; a heartbeat when idle finds pages
    that went away."""
    while True:
        message: bytes | None = b": heartbeat\n\n"
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(HEARTBEAT):
                message = await queue.get()
        if message is None:
            return
        await response.write(message)
