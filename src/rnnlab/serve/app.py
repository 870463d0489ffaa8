"""The ASGI app: the page, JSON suggestions over HTTP, typing sessions over a WebSocket.

    GET  /            the typing page (static/index.html, app.js, style.css)
    GET  /healthz     {"status": "ok"}
    GET  /v1/models   the models served, the first is the default
    GET  /v1/stats    sessions, their cached state, batching counters
    POST /v1/suggest  {"text": str, "k": int = 3, "model": str = default}
                      -> {"suggestions": [{"word", "p"}], "ms", "model", "unknown"}
    WS   /v1/type     send {"text": whole text so far, "id": any} after each keystroke
                      (also {"k": K} or {"model": NAME}); each answer is the HTTP one plus
                      the "id" of the message it answers. A message that arrives while the
                      previous one is computed replaces any older waiting one: the answer
                      is for the latest text (ids let a client see which).

Bad input is a 4xx with {"error": one line} (WebSocket: that object, the session goes on);
a message over the size limit closes the WebSocket with 1009, a server at its connection
limit closes new ones with 1013. The limits are ``sessions.Limits`` (docs/serve.md).
"""
from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from .models import ServedModel
from .sessions import Limits, Session, Sessions

STATIC = Path(__file__).parent / "static"


class BadInput(Exception):
    """A request the server refuses: the HTTP status and a one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def parse(raw: str | bytes, limits: Limits) -> dict:
    if len(raw) > limits.max_message:
        raise BadInput(413, f"message is {len(raw)} bytes; the limit is {limits.max_message}")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadInput(400, f"not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise BadInput(400, f"expected a JSON object, received {type(data).__name__}")
    return data


def check_text(data: dict, limits: Limits) -> str:
    text = data["text"]
    if not isinstance(text, str):
        raise BadInput(400, f'"text" must be a string, received {type(text).__name__}')
    if len(text) > limits.max_text:
        raise BadInput(413, f'"text" has {len(text)} characters; the limit is '
                            f"{limits.max_text}")
    return text


def check_k(data: dict, limits: Limits, default: int) -> int:
    k = data.get("k", default)
    if not isinstance(k, int) or isinstance(k, bool):
        raise BadInput(400, f'"k" must be an integer, received {type(k).__name__}')
    if not 1 <= k <= limits.max_k:
        raise BadInput(422, f'"k" must be between 1 and {limits.max_k}, received {k}')
    return k


def check_model(data: dict, models: dict[str, ServedModel], default: str) -> str:
    name = data.get("model", default)
    if not isinstance(name, str):
        raise BadInput(400, f'"model" must be a string, received {type(name).__name__}')
    if name not in models:
        raise BadInput(404, f"unknown model {name!r}; serving: {', '.join(models)}")
    return name


def suggest(pred: Any, text: str, k: int) -> dict:
    """Run in a worker thread: the suggestions for ``text`` and the time they took."""
    t0 = time.perf_counter()
    words = pred.suggest(text, k)
    return {"suggestions": [{"word": w, "p": p} for w, p in words],
            "ms": round((time.perf_counter() - t0) * 1e3, 3), "unknown": list(pred.unknown)}


def create_app(models: dict[str, ServedModel], limits: Limits | None = None) -> Starlette:
    """The app serving ``models`` (name -> ServedModel; the first is the default)."""
    limits = limits or Limits()
    default = next(iter(models))
    sessions = Sessions(limits)
    pool = ThreadPoolExecutor(limits.workers, thread_name_prefix="rnnlab-suggest")

    async def compute(pred: Any, text: str, k: int) -> dict:
        return await asyncio.get_running_loop().run_in_executor(pool, suggest, pred, text, k)

    async def page(request: Request) -> FileResponse:
        return FileResponse(STATIC / "index.html")

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def list_models(request: Request) -> JSONResponse:
        return JSONResponse({"models": [m.describe() for m in models.values()],
                             "default": default})

    async def stats(request: Request) -> JSONResponse:
        batching = {n: {"batches": m.batcher.batches, "steps": m.batcher.pairs}
                    for n, m in models.items()}
        return JSONResponse({**sessions.stats(), "batching": batching})

    async def http_suggest(request: Request) -> JSONResponse:
        body = await request.body()
        try:
            data = parse(body, limits)
            if "text" not in data:
                raise BadInput(400, 'missing "text"')
            text, k = check_text(data, limits), check_k(data, limits, 3)
            name = check_model(data, models, default)
        except BadInput as e:
            return JSONResponse({"error": str(e)}, status_code=e.status)
        out = await compute(models[name].session(), text, k)    # a fresh read, batched
        return JSONResponse({**out, "model": name})

    async def typing(ws: WebSocket) -> None:
        await ws.accept()
        if len(sessions) >= limits.max_connections:
            await ws.close(code=1013, reason="server at its connection limit; retry later")
            return
        session = sessions.open()
        try:
            await TypingSession(ws, session, sessions, models, limits, compute).run()
        finally:
            sessions.close(session)

    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": f"internal error ({type(exc).__name__})"}, 500)

    routes = [Route("/", page), Route("/healthz", healthz), Route("/v1/models", list_models),
              Route("/v1/stats", stats), Route("/v1/suggest", http_suggest, methods=["POST"]),
              WebSocketRoute("/v1/type", typing),
              Mount("/static", StaticFiles(directory=STATIC), name="static")]
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error,
                                                       Exception: server_error})
    app.state.sessions, app.state.models, app.state.limits = sessions, models, limits
    return app


class TypingSession:
    """One WebSocket client: a reader task keeps only the latest text, the writer answers."""

    def __init__(self, ws: WebSocket, session: Session, sessions: Sessions,
                 models: dict[str, ServedModel], limits: Limits, compute) -> None:
        self.ws, self.session, self.sessions = ws, session, sessions
        self.models, self.limits, self.compute = models, limits, compute
        self.k, self.model = 3, next(iter(models))
        self.text: str | None = None                     # the last text received
        self.pending: tuple[Any, float] | None = None    # (id, arrival) of the text to answer
        self.outbox: list[dict] = []                     # errors to send
        self.wake = asyncio.Event()
        self.closing: int | None = None                  # close code, once decided

    async def run(self) -> None:
        reader = asyncio.create_task(self.read())
        try:
            await self.write()
        finally:
            reader.cancel()

    async def read(self) -> None:
        try:
            while self.closing is None:
                msg = await self.ws.receive()
                if msg["type"] == "websocket.disconnect":
                    self.closing = 1000
                else:
                    self.take(msg.get("text") if msg.get("text") is not None
                              else msg.get("bytes") or b"")
                self.wake.set()
        except (WebSocketDisconnect, RuntimeError):
            self.closing = 1000
            self.wake.set()

    def take(self, raw: str | bytes) -> None:
        """Check one message; keep its text (replacing a waiting one) or queue an error."""
        data: dict = {}
        try:
            data = parse(raw, self.limits)
            k = check_k(data, self.limits, self.k)
            model = check_model(data, self.models, self.model)
            text = check_text(data, self.limits) if "text" in data else self.text
            if "text" not in data and "k" not in data and "model" not in data:
                raise BadInput(400, 'expected "text", "k" or "model"')
        except BadInput as e:
            self.outbox.append({"error": str(e), "id": data.get("id")})
            if e.status == 413 and "bytes" in str(e):
                self.closing = 1009
            return
        self.k, self.model, self.text = k, model, text
        if text is not None:
            self.pending = (data.get("id"), time.perf_counter())

    async def write(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.outbox:
                await self.send(self.outbox.pop(0))
            if self.closing is not None:
                if self.closing != 1000:
                    await self.ws.close(code=self.closing, reason="message too big")
                return
            if self.pending is not None:
                (mid, arrived), self.pending = self.pending, None
                text, k, name = self.text, self.k, self.model
                pred, rebuilt = self.sessions.begin(self.session, self.models[name])
                try:
                    out = await self.compute(pred, text, k)
                finally:
                    self.sessions.end(self.session)
                out.update(model=name, id=mid, ms=round((time.perf_counter() - arrived) * 1e3, 3))
                if rebuilt:
                    out["rebuilt"] = True
                await self.send(out)

    async def send(self, obj: dict) -> None:
        try:
            await self.ws.send_json(obj)
        except (WebSocketDisconnect, RuntimeError):
            self.closing = 1000
