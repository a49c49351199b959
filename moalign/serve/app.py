"""An OpenAI-compatible API over steerable checkpoints, plus a playground page.

Routes: POST /v1/chat/completions, POST /v1/completions (steering: the extra body field
`preference` = {objective: weight}, a list in objective order, or any string the CLI takes such as
"helpful=0.7,harmless=0.3" or DPA's "angle=30"; or the standard `user` field for checkpoints that know users),
GET /v1/models, GET /v1/models/{model}/front.png, GET /healthz, GET / (the playground).
Every bad request is a 4xx with OpenAI's error body; nothing in a request names a path.
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import re
import time
import uuid
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from fastapi import FastAPI, HTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, StreamingResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from moalign.errors import MoalignError
from moalign.serve.engine import Engine
from moalign.steerable import SteerablePolicy

log = logging.getLogger("moalign.serve")


def _unicode(text: str) -> str:
    """A lone surrogate (valid JSON, "\\ud800") is not text a tokenizer can take."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("not valid Unicode (a lone surrogate)") from None
    return text


Text = Annotated[str, AfterValidator(_unicode)]
MIN_TEMPERATURE = 0.01  # below it, decoding is greedy (sampling's limit): logits / 1e-300 overflow


class _Body(BaseModel):
    """Types are strict where a coerced value would be a guess (`max_tokens: "8"`, `stream: "yes"`)."""
    model_config = ConfigDict(extra="ignore")  # OpenAI clients send fields we do not use
    model: Text
    max_tokens: Optional[int] = Field(None, ge=1, strict=True)
    max_completion_tokens: Optional[int] = Field(None, ge=1, strict=True)
    # unset: the checkpoint's generation_config (SmolLM2: 0.7 / 0.9), not OpenAI's 1.0, which turns a
    # small instruct model's text into gibberish
    temperature: Optional[float] = Field(None, ge=0, le=2, strict=True)
    top_p: Optional[float] = Field(None, gt=0, le=1, strict=True)
    n: int = Field(1, ge=1, le=8, strict=True)
    seed: Optional[int] = Field(None, ge=-(2 ** 63), lt=2 ** 63, strict=True)
    stream: bool = Field(False, strict=True)
    stop: Optional[Union[Text, list[Text]]] = None
    user: Optional[Text] = None
    preference: Optional[Union[dict[str, Any], Text, list[float]]] = None  # as in the CLI and Python


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant", "developer"]
    content: Text


class ChatRequest(_Body):
    messages: list[Message] = Field(min_length=1)


class CompletionRequest(_Body):
    prompt: Union[Text, list[Text]]


def error(status: int, message: str, code: str | None = None, param: str | None = None,
          headers: dict | None = None) -> JSONResponse:
    kind = {401: "authentication_error", 404: "invalid_request_error"}.get(status, "invalid_request_error")
    if status >= 500:
        kind = "server_error"
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}},
                        status_code=status, headers=headers)


def _hostname(value: str) -> str:
    """The name in a Host header or a bound address, without the port ("[::1]" keeps its brackets)."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[:value.find("]") + 1]
    if value.count(":") > 1:  # a bare IPv6 address, as a server is bound to
        return f"[{value}]"
    return value.partition(":")[0]


def _loopback(name: str) -> bool:
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return name == "localhost"


def _allowed_hosts(hosts: list[str] | None) -> set[str]:
    return {_hostname(h) if h != "*" else h for h in hosts or []}


def _stop(text: str, stop) -> tuple[str, bool]:
    for s in [stop] if isinstance(stop, str) else (stop or []):
        if s and s in text:
            return text[:text.index(s)], True
    return text, False


class Server:
    """The served checkpoints and the limits every request is held to. `max_rows` caps prompts x n
    per request (and the rows of one generate call); `max_body_bytes` caps a request's body (413,
    before it is read); `allowed_hosts` are Host names accepted besides loopback ones (localhost,
    127.0.0.1, [::1], any port) and the bound address, on a server listening on loopback, where the
    check keeps a DNS-rebinding page out; on another address they are the only names accepted when
    given ("*": any)."""

    def __init__(self, policies: dict[str, SteerablePolicy], *, api_key: str | None = None,
                 max_tokens_cap: int = 256, max_prompt_tokens: int = 512, default_max_tokens: int = 64,
                 max_rows: int = 64, max_body_bytes: int = 1 << 20, allowed_hosts: list[str] | None = None,
                 batch_window: float = 0.01):
        self.engines = {name: Engine(name, p, window=batch_window, max_rows=max_rows)
                        for name, p in policies.items()}
        self.api_key = api_key
        self.max_tokens_cap, self.max_prompt_tokens = max_tokens_cap, max_prompt_tokens
        self.default_max_tokens = min(default_max_tokens, max_tokens_cap)
        self.max_rows, self.max_body_bytes = max_rows, max_body_bytes
        self.allowed_hosts = _allowed_hosts(allowed_hosts)

    # -- checks -------------------------------------------------------------------------------
    def host_allowed(self, header: str | None, bound: str | None) -> bool:
        if header is None or "*" in self.allowed_hosts:
            return True
        name = _hostname(header)
        if name in self.allowed_hosts:
            return True
        if bound is None or not _loopback(_hostname(bound)):
            return not self.allowed_hosts
        return _loopback(name) or name == _hostname(bound)

    def authorised(self, header: str) -> bool:
        if self.api_key is None:
            return True
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(),
                                                                  self.api_key.encode())

    def engine(self, name: str) -> Engine:
        if name not in self.engines:
            raise HTTPException(404, {"message": f"model {name!r} not found "
                                                 f"(loaded: {', '.join(self.engines)})",
                                      "code": "model_not_found", "param": "model"})
        return self.engines[name]

    def steering(self, engine: Engine, body: _Body):
        policy = engine.policy
        # plain checkpoints ignore `user`, as OpenAI does
        user = body.user if body.user and policy.users else None
        if user is not None and user not in policy.users:
            raise MoalignError(f"unknown user {user!r} for model {engine.name!r}")
        if body.preference is not None and user is not None:
            raise MoalignError("give a preference or a user, not both")
        if body.preference is None and not user:
            return None, user
        try:
            return policy.preference(body.preference, user), user
        except (ArithmeticError, ValueError, TypeError) as e:  # a weight of 1e400, angle=1e400, ...
            raise MoalignError(f"preference: {e}") from None

    def generation(self, body: _Body) -> dict:
        max_tokens = body.max_completion_tokens or body.max_tokens or self.default_max_tokens
        if max_tokens > self.max_tokens_cap:
            raise HTTPException(400, {"message": f"max_tokens {max_tokens} is above this server's cap of "
                                                 f"{self.max_tokens_cap}", "param": "max_tokens"})
        sample = None if body.temperature is None else body.temperature >= MIN_TEMPERATURE
        gen = {"max_new_tokens": max_tokens, "do_sample": sample, "top_p": body.top_p, "seed": body.seed}
        if sample:
            gen["temperature"] = body.temperature
        return gen

    async def check_prompts(self, engine: Engine, prompts: list, n: int, pref, user, gen: dict) -> None:
        if not prompts or any(isinstance(p, str) and not p.strip() for p in prompts):
            raise HTTPException(400, {"message": "the prompt is empty", "param": "prompt"})
        if len(prompts) * n > self.max_rows:
            message = f"{len(prompts)} prompts x n={n} is above this server's cap of {self.max_rows} answers"
            raise HTTPException(400, {"message": message + " per request", "param": "prompt"})
        try:
            await engine.check(prompts, pref, user, gen["max_new_tokens"], self.max_prompt_tokens)
        except MoalignError as e:
            raise HTTPException(400, {"message": str(e), "param": "messages"}) from None

    # -- answers ------------------------------------------------------------------------------
    async def complete(self, body: _Body, prompt, chat: bool):
        engine = self.engine(body.model)
        pref, user = self.steering(engine, body)
        gen = self.generation(body)
        prompts = [prompt] if chat or isinstance(prompt, str) else list(prompt)
        await self.check_prompts(engine, prompts, body.n, pref, user, gen)
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        created = int(time.time())
        if body.stream:
            if len(prompts) * body.n > 1:
                raise HTTPException(400, {"message": "stream supports one prompt and n = 1",
                                          "param": "stream"})
            return StreamingResponse(self._stream(engine, rid, created, body, prompts[0], pref, user,
                                                  gen, chat),
                                     media_type="text/event-stream")
        result = await engine.submit([p for p in prompts for _ in range(body.n)], pref, user, gen)
        choices, completion_tokens = [], 0
        for i, (text, n_tok) in enumerate(zip(result.texts, result.completion_tokens)):
            text, stopped = _stop(text, body.stop)
            finish = "length" if n_tok >= gen["max_new_tokens"] and not stopped else "stop"
            completion_tokens += n_tok
            choices.append({"index": i, "message": {"role": "assistant", "content": text},
                            "finish_reason": finish}
                           if chat else {"index": i, "text": text, "logprobs": None, "finish_reason": finish})
        prompt_tokens = result.prompt_tokens // max(body.n, 1)
        return {"id": rid, "object": "chat.completion" if chat else "text_completion", "created": created,
                "model": body.model, "choices": choices,
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens}}

    async def _stream(self, engine, rid, created, body, prompt, pref, user, gen, chat):
        kind = "chat.completion.chunk" if chat else "text_completion"

        def chunk(delta: dict | str, finish=None, usage=None):
            choice = ({"index": 0, "delta": delta, "finish_reason": finish} if chat
                      else {"index": 0, "text": delta, "logprobs": None, "finish_reason": finish})
            payload = {"id": rid, "object": kind, "created": created, "model": body.model,
                       "choices": [choice]}
            if usage:
                payload["usage"] = usage
            return f"data: {json.dumps(payload)}\n\n"

        if chat:
            yield chunk({"role": "assistant", "content": ""})
        text, n_prompt = "", 0
        try:
            async with contextlib.aclosing(engine.stream(prompt, pref, user, gen)) as pieces:  # closed: stops
                async for piece in pieces:
                    if isinstance(piece, int):
                        n_prompt = piece
                        continue
                    if not text:
                        piece = piece.lstrip()
                    cut, stopped = _stop(text + piece, body.stop)
                    new = cut[len(text):]
                    text = cut
                    if new:
                        yield chunk({"content": new} if chat else new)
                    if stopped:
                        break
        except Exception as e:  # the stream has started: report in band, keep serving
            log.exception("stream failed")
            yield f"data: {json.dumps({'error': {'message': str(e), 'type': 'server_error'}})}\n\n"
            return
        n_completion = await engine.count(text)
        finish = "length" if n_completion >= gen["max_new_tokens"] else "stop"
        yield chunk({} if chat else "", finish, {"prompt_tokens": n_prompt, "completion_tokens": n_completion,
                                                 "total_tokens": n_prompt + n_completion})
        yield "data: [DONE]\n\n"

    def models(self) -> dict:
        data = []
        for name, engine in self.engines.items():
            p = engine.policy
            data.append({"id": name, "object": "model", "created": 0, "owned_by": "moalign",
                         "method": p.manifest.method, "objectives": p.objectives, "steering": p.kind,
                         "users": p.users, "front": self.front_png(name) is not None})
        return {"object": "list", "data": data}

    def front_png(self, name: str) -> Path | None:
        root = self.engines[name].policy.path
        for candidate in (root / "front.png", root / "front" / "front.png"):
            if candidate.is_file():
                return candidate
        return None


class Guard:
    """What needs neither the body nor a route, ahead of FastAPI: the Host header, the body's size
    (413 before it is read, from Content-Length or while it streams in) and the API key (401 before
    the body is parsed); and a crash becomes a 500 that keeps the connection (Starlette's own
    handler re-raises, and the server then drops the client's keep-alive connection)."""

    def __init__(self, app, server: Server):
        self.app, self.server = app, server

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        refusal = self.refusal(scope)
        if refusal is not None:
            return await refusal(scope, receive, send)
        started = False

        async def tracked(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, self.limited(receive), tracked)
        except Exception:
            log.exception("internal error")
            if started:
                raise
            await error(500, "internal error: the request was logged")(scope, receive, send)

    def refusal(self, scope) -> JSONResponse | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        bound = (scope.get("server") or (None,))[0]
        if not self.server.host_allowed(headers.get("host"), bound):
            return error(400, "this server does not answer to that Host name", code="host_not_allowed")
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.server.max_body_bytes:
            return self.too_large()
        if scope["path"].startswith("/v1/") and not self.server.authorised(headers.get("authorization", "")):
            return error(401, "missing or wrong API key (Authorization: Bearer KEY)", code="invalid_api_key")
        return None

    def too_large(self) -> JSONResponse:
        return error(413, f"the request body is above this server's cap of {self.server.max_body_bytes} "
                          "bytes", code="request_too_large")

    def limited(self, receive):
        seen = 0

        async def receive_limited():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.server.max_body_bytes:  # a chunked body: FastAPI re-raises HTTPException
                raise HTTPException(413, {"message": json.loads(self.too_large().body)["error"]["message"],
                                          "code": "request_too_large"})
            return message

        return receive_limited


def _page() -> tuple[str, dict]:
    """The playground and its headers: a CSP that allows its own inline script and style (by hash)
    and same-origin requests only, no framing, no type sniffing."""
    html = resources.files("moalign.serve").joinpath("page.html").read_text()

    def digest(tag: str) -> str:
        body = re.search(f"<{tag}>(.*?)</{tag}>", html, re.S).group(1)
        return "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"

    csp = (f"default-src 'none'; script-src {digest('script')}; style-src {digest('style')}; "
           "img-src 'self' blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
           "frame-ancestors 'none'")
    return html, {"Content-Security-Policy": csp, "X-Frame-Options": "DENY",
                  "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


def create_app(server: Server) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        for engine in server.engines.values():
            engine.close()

    app = FastAPI(title="moalign", version="1", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.add_middleware(Guard, server=server)
    html, page_headers = _page()

    @app.exception_handler(StarletteHTTPException)  # FastAPI's own, and the router's 404 / 405
    async def _http(request, exc: StarletteHTTPException):
        detail = exc.detail if isinstance(exc.detail, dict) else {"message": str(exc.detail)}
        return error(exc.status_code, detail["message"], detail.get("code"), detail.get("param"),
                     headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, exc: RequestValidationError):
        problems = []
        for e in exc.errors():
            loc = ".".join(str(x) for x in e["loc"] if x != "body") or "body"
            problems.append(f"{loc}: {e['msg']}")
        first = exc.errors()[0]["loc"] if exc.errors() else ()
        return error(400, "; ".join(problems), param=".".join(str(x) for x in first if x != "body") or None)

    @app.exception_handler(MoalignError)
    async def _moalign(request, exc: MoalignError):
        return error(400, str(exc))

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok", "models": list(server.engines)}

    @app.get("/", response_class=HTMLResponse)
    async def page():
        return HTMLResponse(html, headers=page_headers)

    @app.get("/v1/models")  # /v1/ routes: the API key is checked by Guard, before the body is read
    async def models():
        return server.models()

    @app.get("/v1/models/{model}/front.png")
    async def front(model: str):
        server.engine(model)
        path = server.front_png(model)
        if path is None:
            raise HTTPException(404, {"message": f"model {model!r} has no front plot"})
        return FileResponse(path, media_type="image/png")

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest):
        messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.content}
                    for m in body.messages]
        if not any(m["content"].strip() for m in messages if m["role"] == "user"):
            raise HTTPException(400, {"message": "messages: no user message with content",
                                      "param": "messages"})
        return await server.complete(body, messages, chat=True)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest):
        return await server.complete(body, body.prompt, chat=False)

    return app


def load_server(checkpoints: list[str], **options) -> Server:
    """Load checkpoints given as DIR or NAME=DIR (the name defaults to the directory's name)."""
    from moalign.steerable import load_steerable
    policies: dict[str, SteerablePolicy] = {}
    for item in checkpoints:
        name, sep, path = item.partition("=")
        if not sep:
            name, path = Path(item).resolve().name, item
        if name in policies:
            raise MoalignError(f"two checkpoints are named {name!r}: use NAME=DIR")
        policies[name] = load_steerable(path)
    if not policies:
        raise MoalignError("serve: give at least one checkpoint")
    return Server(policies, **options)


class BackgroundServer:
    """Serve an app on a free loopback port from a thread (tests, benchmarks): `with ... as s: s.url`."""

    def __init__(self, app: FastAPI, server: Server | None = None, host: str = "127.0.0.1"):
        import socket
        import threading

        import uvicorn
        with socket.socket() as sock:
            sock.bind((host, 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        self.server = server
        self.uvicorn = uvicorn.Server(uvicorn.Config(app, host=host, port=self.port, log_level="error"))
        self.thread = threading.Thread(target=self.uvicorn.run, daemon=True)

    def __enter__(self) -> "BackgroundServer":
        self.thread.start()
        deadline = time.time() + 30
        while not self.uvicorn.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.uvicorn.should_exit = True
        self.thread.join(timeout=10)
