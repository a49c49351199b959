"""An OpenAI-compatible API over steerable checkpoints, plus a playground page.

Routes: POST /v1/chat/completions, POST /v1/completions (steering: the extra body field
`preference` = {objective: weight}, a list in objective order, or any string the CLI takes such as
"helpful=0.7,harmless=0.3" or DPA's "angle=30"; or the standard `user` field for checkpoints that know users),
GET /v1/models, GET /v1/models/{model}/front.png, GET /healthz, GET / (the playground).
Every bad request is a 4xx with OpenAI's error body; nothing in a request names a path.
"""
from __future__ import annotations

import contextlib
import hmac
import json
import logging
import time
import uuid
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Optional, Union

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from moalign.errors import MoalignError
from moalign.serve.engine import Engine
from moalign.steerable import SteerablePolicy

log = logging.getLogger("moalign.serve")


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")  # OpenAI clients send fields we do not use
    model: str
    max_tokens: Optional[int] = Field(None, ge=1)
    max_completion_tokens: Optional[int] = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    n: int = Field(1, ge=1, le=8)
    seed: Optional[int] = None
    stream: bool = False
    stop: Optional[Union[str, list[str]]] = None
    user: Optional[str] = None
    preference: Optional[Union[dict[str, Any], str, list[float]]] = None  # as in the CLI and Python


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant", "developer"]
    content: str


class ChatRequest(_Body):
    messages: list[Message] = Field(min_length=1)


class CompletionRequest(_Body):
    prompt: Union[str, list[str]]


def error(status: int, message: str, code: str | None = None, param: str | None = None) -> JSONResponse:
    kind = {401: "authentication_error", 404: "invalid_request_error"}.get(status, "invalid_request_error")
    if status >= 500:
        kind = "server_error"
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}}, status_code=status)


def _stop(text: str, stop) -> tuple[str, bool]:
    for s in [stop] if isinstance(stop, str) else (stop or []):
        if s and s in text:
            return text[:text.index(s)], True
    return text, False


class Server:
    def __init__(self, policies: dict[str, SteerablePolicy], *, api_key: str | None = None,
                 max_tokens_cap: int = 256, max_prompt_tokens: int = 512, default_max_tokens: int = 64):
        self.engines = {name: Engine(name, p) for name, p in policies.items()}
        self.api_key = api_key
        self.max_tokens_cap, self.max_prompt_tokens = max_tokens_cap, max_prompt_tokens
        self.default_max_tokens = min(default_max_tokens, max_tokens_cap)

    # -- checks -------------------------------------------------------------------------------
    def engine(self, name: str) -> Engine:
        if name not in self.engines:
            raise HTTPException(404, {"message": f"model {name!r} not found (loaded: {', '.join(self.engines)})",
                                      "code": "model_not_found", "param": "model"})
        return self.engines[name]

    def steering(self, engine: Engine, body: _Body):
        policy = engine.policy
        user = body.user if body.user and policy.users else None  # plain checkpoints ignore `user`, as OpenAI does
        if user is not None and user not in policy.users:
            raise MoalignError(f"unknown user {user!r} for model {engine.name!r}")
        if body.preference is not None and user is not None:
            raise MoalignError("give a preference or a user, not both")
        pref = policy.preference(body.preference, user) if (body.preference is not None or user) else None
        return pref, user

    def generation(self, body: _Body) -> dict:
        max_tokens = body.max_completion_tokens or body.max_tokens or self.default_max_tokens
        if max_tokens > self.max_tokens_cap:
            raise HTTPException(400, {"message": f"max_tokens {max_tokens} is above this server's cap of "
                                                 f"{self.max_tokens_cap}", "param": "max_tokens"})
        gen = {"max_new_tokens": max_tokens, "do_sample": body.temperature > 0, "top_p": body.top_p,
               "seed": body.seed if body.seed is not None else uuid.uuid4().int % (2 ** 31)}
        if body.temperature > 0:
            gen["temperature"] = body.temperature
        return gen

    def check_prompt(self, engine: Engine, prompts: list) -> None:
        from moalign.models import render_prompt
        for p in prompts:
            if isinstance(p, str) and not p.strip():
                raise HTTPException(400, {"message": "the prompt is empty", "param": "prompt"})
            n = engine.count_tokens(render_prompt(engine.policy.tokenizer, p))
            if n > self.max_prompt_tokens:
                raise HTTPException(400, {"message": f"the prompt has {n} tokens, above this server's cap of "
                                                     f"{self.max_prompt_tokens}", "param": "messages"})

    # -- answers ------------------------------------------------------------------------------
    async def complete(self, body: _Body, prompt, chat: bool):
        engine = self.engine(body.model)
        pref, user = self.steering(engine, body)
        gen = self.generation(body)
        prompts = [prompt] if chat or isinstance(prompt, str) else list(prompt)
        if not prompts:
            raise HTTPException(400, {"message": "the prompt is empty", "param": "prompt"})
        self.check_prompt(engine, prompts)
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        created = int(time.time())
        if body.stream:
            if len(prompts) * body.n > 1:
                raise HTTPException(400, {"message": "stream supports one prompt and n = 1", "param": "stream"})
            return StreamingResponse(self._stream(engine, rid, created, body, prompts[0], pref, user, gen, chat),
                                     media_type="text/event-stream")
        result = await engine.submit([p for p in prompts for _ in range(body.n)], pref, user, gen)
        choices, completion_tokens = [], 0
        for i, (text, n_tok) in enumerate(zip(result.texts, result.completion_tokens)):
            text, stopped = _stop(text, body.stop)
            finish = "length" if n_tok >= gen["max_new_tokens"] and not stopped else "stop"
            completion_tokens += n_tok
            choices.append({"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
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
            payload = {"id": rid, "object": kind, "created": created, "model": body.model, "choices": [choice]}
            if usage:
                payload["usage"] = usage
            return f"data: {json.dumps(payload)}\n\n"

        if chat:
            yield chunk({"role": "assistant", "content": ""})
        text, n_prompt = "", 0
        try:
            async for piece in engine.stream(prompt, pref, user, gen):
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
        n_completion = engine.count_tokens(text)
        finish = "length" if n_completion >= gen["max_new_tokens"] else "stop"
        yield chunk({} if chat else "", finish, {"prompt_tokens": n_prompt, "completion_tokens": n_completion,
                                                 "total_tokens": n_prompt + n_completion})
        yield "data: [DONE]\n\n"

    def models(self) -> dict:
        data = []
        for name, engine in self.engines.items():
            p = engine.policy
            data.append({"id": name, "object": "model", "created": 0, "owned_by": "moalign", "method": p.manifest.method,
                         "objectives": p.objectives, "steering": p.kind, "users": p.users,
                         "front": self.front_png(name) is not None})
        return {"object": "list", "data": data}

    def front_png(self, name: str) -> Path | None:
        root = self.engines[name].policy.path
        for candidate in (root / "front.png", root / "front" / "front.png"):
            if candidate.is_file():
                return candidate
        return None


def create_app(server: Server) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        for engine in server.engines.values():
            engine.close()

    app = FastAPI(title="moalign", version="1", docs_url=None, redoc_url=None, lifespan=lifespan)

    def authorised(request: Request) -> None:
        if server.api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), server.api_key.encode()):
            raise HTTPException(401, {"message": "missing or wrong API key (Authorization: Bearer KEY)",
                                      "code": "invalid_api_key"})

    @app.exception_handler(HTTPException)
    async def _http(request, exc: HTTPException):
        detail = exc.detail if isinstance(exc.detail, dict) else {"message": str(exc.detail)}
        return error(exc.status_code, detail["message"], detail.get("code"), detail.get("param"))

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

    @app.exception_handler(Exception)
    async def _crash(request, exc: Exception):
        log.exception("internal error")
        return error(500, "internal error: the request was logged")

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok", "models": list(server.engines)}

    @app.get("/", response_class=HTMLResponse)
    async def page():
        return resources.files("moalign.serve").joinpath("page.html").read_text()

    @app.get("/v1/models", dependencies=[Depends(authorised)])
    async def models():
        return server.models()

    @app.get("/v1/models/{model}/front.png", dependencies=[Depends(authorised)])
    async def front(model: str):
        server.engine(model)
        path = server.front_png(model)
        if path is None:
            raise HTTPException(404, {"message": f"model {model!r} has no front plot"})
        return FileResponse(path, media_type="image/png")

    @app.post("/v1/chat/completions", dependencies=[Depends(authorised)])
    async def chat(body: ChatRequest):
        messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.content}
                    for m in body.messages]
        if not any(m["content"].strip() for m in messages if m["role"] == "user"):
            raise HTTPException(400, {"message": "messages: no user message with content", "param": "messages"})
        return await server.complete(body, messages, chat=True)

    @app.post("/v1/completions", dependencies=[Depends(authorised)])
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
