"""The server under careless and hostile clients: a bad request gets a 4xx (never a 500) and fails
only itself, never the requests batched with it; limits hold before any parsing; a crash keeps the
connection; a dropped stream stops its generation; the event loop never touches the generation
thread's tokenizer."""
import concurrent.futures
import http.client
import json
import threading
import time

import httpx
import pytest

WINDOW = 0.3  # long enough that concurrent requests land in one batch


@pytest.fixture(scope="module")
def strict(base_dir, soup_dir):
    """The default caps (512 prompt tokens + 256 new ones exceed the base's 256 positions), a small
    body and row limit, and a soup whose generation crashes on prompts containing "boom"."""
    from moalign.serve.app import BackgroundServer, create_app, load_server
    server = load_server([f"base={base_dir}", f"soup={soup_dir}"], max_rows=16, max_body_bytes=64_000,
                         batch_window=WINDOW)
    policy = server.engines["soup"].policy
    real = policy.complete

    def complete(model, texts, rows, **gen):
        if any("boom" in t for t in texts):
            raise RuntimeError("boom")
        return real(model, texts, rows, **gen)

    policy.complete = complete
    with BackgroundServer(create_app(server), server) as r:
        yield r


def chat(content="how do i fix my bike ?", **extra):
    return {"model": "soup", "messages": [{"role": "user", "content": content}], "max_tokens": 16,
            "temperature": 0, "preference": {"helpful": 0.7, "harmless": 0.3}, **extra}


def post(url, body, path="/v1/chat/completions", **kwargs):
    """`body` is sent as JSON with non-ASCII escaped (a lone surrogate stays valid JSON)."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(url + path, content=content, timeout=60,
                      headers={"content-type": "application/json", **kwargs.pop("headers", {})}, **kwargs)


BAD = {
    "context overflow": (chat("bread " * 200, max_tokens=256), 400, "context"),
    "seed >= 2^64": (chat(seed=2 ** 64), 400, "seed"),
    "weight 10^400": (chat(preference={"helpful": 10 ** 400, "harmless": 1}), 400, "preference"),
    "lone surrogate": (chat("how do i \ud800 fix my bike ?"), 400, "surrogate"),
    "max_tokens as a string": (chat(max_tokens="8"), 400, "max_tokens"),
    "stream as a string": (chat(stream="yes"), 400, "stream"),
    "too many answers": (chat(n=8, messages=None) | {"prompt": ["a b"] * 3}, 400, "cap of 16"),
    "body over the limit": (chat("bread " * 12_000), 413, "cap of 64000 bytes"),
}


def together(url, bad_body, normal=7):
    """The bad request and `normal` good ones at the same moment: (bad response, good responses)."""
    barrier = threading.Barrier(normal + 1)

    def send(body):
        barrier.wait()
        path = "/v1/completions" if "prompt" in body else "/v1/chat/completions"
        return post(url, {k: v for k, v in body.items() if v is not None}, path)

    bodies = [bad_body] + [chat(f"how do i fix my bike ? {i}") for i in range(normal)]
    with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
        responses = list(pool.map(send, bodies))
    return responses[0], responses[1:]


@pytest.mark.parametrize("name", BAD)
def test_a_bad_request_fails_alone(strict, name):
    body, status, needle = BAD[name]
    bad, good = together(strict.url, body)
    assert bad.status_code == status, bad.text
    assert needle in bad.json()["error"]["message"]
    assert [r.status_code for r in good] == [200] * 7


def test_a_crash_fails_only_its_own_request_and_keeps_the_connection(strict):
    engine = strict.server.engines["soup"]
    before = engine.batches
    bad, good = together(strict.url, chat("boom"))
    assert bad.status_code == 500 and bad.json()["error"]["type"] == "server_error"
    assert [r.status_code for r in good] == [200] * 7
    assert engine.batches - before <= 7  # the good ones were answered, together or alone
    conn = http.client.HTTPConnection(strict.url.removeprefix("http://"), timeout=60)
    headers = {"content-type": "application/json"}
    conn.request("POST", "/v1/chat/completions", json.dumps(chat("boom")), headers)
    first = conn.getresponse()
    first.read()
    sock = conn.sock
    assert first.status == 500 and not first.will_close
    conn.request("POST", "/v1/chat/completions", json.dumps(chat()), headers)
    second = conn.getresponse()
    assert second.status == 200 and conn.sock is sock  # the same connection answered both
    conn.close()


def test_tiny_temperature_is_greedy_and_seeds_stay_per_request(strict):
    greedy = post(strict.url, chat()).json()["choices"][0]["message"]["content"]
    tiny = post(strict.url, chat(temperature=1e-300))
    assert tiny.status_code == 200 and tiny.json()["choices"][0]["message"]["content"] == greedy
    # sampled answers with explicit seeds: the same answer alone and batched with other seeds
    sampled = {s: chat(temperature=1.0, seed=s, max_tokens=24) for s in (11, 12, 13)}
    alone = {s: post(strict.url, b).json()["choices"][0]["message"]["content"] for s, b in sampled.items()}
    barrier = threading.Barrier(len(sampled))

    def send(s):
        barrier.wait()
        return post(strict.url, sampled[s]).json()["choices"][0]["message"]["content"]

    with concurrent.futures.ThreadPoolExecutor(len(sampled)) as pool:
        batched = dict(zip(sampled, pool.map(send, sampled)))
    assert batched == alone and len(set(alone.values())) > 1


def test_errors_have_openai_shape(strict):
    r = httpx.get(strict.url + "/nope")
    assert r.status_code == 404 and r.json()["error"]["message"]
    r = httpx.get(strict.url + "/v1/chat/completions")
    assert r.status_code == 405 and r.json()["error"]["message"]
    r = post(strict.url, b'{"model": "soup", "messages": [{"role": "user", "content": "\xff\xfe"}]}')
    assert r.status_code == 400 and r.json()["error"]["message"]


def test_limits_come_before_parsing_and_auth(base_dir):
    from moalign.serve.app import BackgroundServer, create_app, load_server
    server = load_server([f"base={base_dir}"], api_key="sesame", max_body_bytes=1000)
    with BackgroundServer(create_app(server), server) as s:
        assert post(s.url, b"x" * 5000).status_code == 413  # no key, no JSON: refused by size alone
        r = post(s.url, b"not json at all")  # no key: refused before the body is parsed
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"

        def chunks():  # no Content-Length: counted as it arrives
            for _ in range(10):
                yield b" " * 500

        r = httpx.post(s.url + "/v1/chat/completions", content=chunks(),
                       headers={"Authorization": "Bearer sesame"})
        assert r.status_code == 413 and "cap of 1000 bytes" in r.json()["error"]["message"]


def test_host_header_on_loopback(strict):
    def status(host):
        return httpx.get(strict.url + "/healthz", headers={"host": host}).status_code

    assert status("evil.example") == 400 and status("evil.example:8000") == 400
    assert status("localhost:1234") == status("127.0.0.1") == status("[::1]:80") == 200


def test_allowed_hosts():
    from moalign.serve.app import Server
    server = Server({}, allowed_hosts=["moalign.lan"])
    assert server.host_allowed("moalign.lan:8000", "127.0.0.1")
    assert server.host_allowed("localhost", "127.0.0.1")
    assert not server.host_allowed("evil.example", "127.0.0.1")
    assert server.host_allowed("moalign.lan", "0.0.0.0") and not server.host_allowed("evil", "0.0.0.0")
    assert Server({}).host_allowed("anything.example", "0.0.0.0")  # public and nothing configured
    assert Server({}).host_allowed("[::1]:8000", "::1") and not Server({}).host_allowed("evil", "::1")


def test_page_headers(strict):
    import base64
    import hashlib
    import re
    r = httpx.get(strict.url + "/")
    assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"
    csp = r.headers["content-security-policy"]
    script = re.search("<script>(.*?)</script>", r.text, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in csp and "frame-ancestors 'none'" in csp


def test_a_dropped_stream_stops_its_generation(strict, monkeypatch):
    from moalign.serve import engine as engine_module
    tokens = []
    real = engine_module._QueueStreamer.put

    def slow_put(self, value):
        tokens.append(time.time())
        time.sleep(0.2)
        return real(self, value)

    monkeypatch.setattr(engine_module._QueueStreamer, "put", slow_put)
    engine = strict.server.engines["base"]
    cancelled = engine.cancelled
    body = {"model": "base", "messages": [{"role": "user", "content": "how do i bake bread ?"}],
            "max_tokens": 128, "stream": True, "temperature": 1.0, "seed": 0}
    with httpx.stream("POST", strict.url + "/v1/chat/completions", json=body, timeout=60) as r:
        next(r.iter_lines())
    time.sleep(1.0)
    seen = len(tokens)
    time.sleep(1.0)
    assert len(tokens) == seen and engine.cancelled == cancelled + 1
    start = time.time()
    r = post(strict.url, {"model": "base", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
    assert r.status_code == 200 and time.time() - start < 2


def test_the_event_loop_never_uses_the_generation_tokenizer(strict, monkeypatch):
    """A fast tokenizer called from two threads at once fails ("Already borrowed", padding errors)."""
    tokenizer = strict.server.engines["soup"].policy.tokenizer
    threads = []
    cls = type(tokenizer)
    real = cls.__call__

    def call(self, *args, **kwargs):
        if self is tokenizer:
            threads.append(threading.current_thread().name)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(cls, "__call__", call)
    assert post(strict.url, chat()).status_code == 200
    with httpx.stream("POST", strict.url + "/v1/chat/completions", json=chat(stream=True), timeout=60) as r:
        assert r.status_code == 200 and "[DONE]" in r.read().decode()
    assert threads and all(name.startswith("moalign-model") for name in threads), threads


def test_eight_clients_careless_and_hostile(strict):
    """8 keep-alive clients for a few seconds, mixing good, bad and dropped requests: no 5xx, no reset."""
    bodies = [chat(), chat(seed=2 ** 64), chat(preference={"helpful": 10 ** 400}), chat("x \ud800"),
              chat(max_tokens="8"), chat("bread " * 200, max_tokens=256), chat(temperature=1e-300),
              chat(temperature=0.8, seed=5), chat(stream=True)]
    stop_at = time.time() + 5
    statuses, failures = [], []

    def client(i):
        with httpx.Client(base_url=strict.url, timeout=60) as http:
            n = 0
            while time.time() < stop_at and n < 500:
                body = bodies[(i + n) % len(bodies)]
                try:
                    if body.get("stream") and n % 2:  # half the streams are dropped after one line
                        with http.stream("POST", "/v1/chat/completions", json=body) as r:
                            next(r.iter_lines())
                            statuses.append(r.status_code)
                    else:
                        r = http.post("/v1/chat/completions", content=json.dumps(body).encode(),
                                      headers={"content-type": "application/json"})
                        statuses.append(r.status_code)
                except httpx.HTTPError as e:
                    failures.append(repr(e))
                n += 1

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(client, range(8)))
    assert not failures
    assert len(statuses) > 16 and all(s < 500 for s in statuses) and 200 in statuses and 400 in statuses


def test_steering_that_no_float_holds_is_the_clients_error(tmp_path):
    """DPA's angle=1e400 (cos of infinity) and a weight of 10^400 are 400s (MoalignError), not crashes."""
    from moalign.errors import MoalignError
    from moalign.serve.app import ChatRequest, Server
    from moalign.steerable import Manifest, load_steerable
    Manifest(method="dpa", objectives=["helpful", "harmless"],
             steering={"kind": "prompt", "conditioner": "dpa"}).write(tmp_path)
    server = Server({"dpa": load_steerable(tmp_path)})
    for pref in ("angle=1e400", {"helpful": 10 ** 400, "harmless": 1}):
        body = ChatRequest(model="dpa", messages=[{"role": "user", "content": "hi"}], preference=pref)
        with pytest.raises(MoalignError, match="preference"):
            server.steering(server.engines["dpa"], body)
    body = ChatRequest(model="dpa", messages=[{"role": "user", "content": "hi"}], preference="angle=30")
    assert server.steering(server.engines["dpa"], body)[0] is not None


def test_cli_serve_takes_the_limits(run_cli, monkeypatch, tmp_path):
    import uvicorn

    from moalign.serve import app as app_module
    from moalign.steerable import Manifest
    Manifest(method="dpa", objectives=["helpful", "harmless"],
             steering={"kind": "prompt", "conditioner": "dpa"}).write(tmp_path)
    servers = []
    real = app_module.load_server
    monkeypatch.setattr(app_module, "load_server",
                        lambda *a, **k: servers.append(real(*a, **k)) or servers[-1])
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)
    code, _, err = run_cli("serve", f"dpa={tmp_path}", "--max-rows", "4", "--max-body-bytes", "5000",
                           "--allowed-host", "moalign.lan", "--allowed-host", "other.lan")
    assert code == 0, err
    server = servers[0]
    assert (server.max_rows, server.max_body_bytes) == (4, 5000) and server.engines["dpa"].max_rows == 4
    assert server.allowed_hosts == {"moalign.lan", "other.lan"}
