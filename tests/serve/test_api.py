"""The API through the official `openai` client, and every bad input over raw HTTP."""
import concurrent.futures

import httpx
import openai
import pytest


def client(running, key="none"):
    return openai.OpenAI(base_url=running.url + "/v1", api_key=key, max_retries=0)


def test_models_and_health(running):
    models = {m.id: m for m in client(running).models.list().data}
    assert set(models) == {"base", "soup"}
    soup = models["soup"].model_dump()
    assert soup["objectives"] == ["helpful", "harmless"] and soup["steering"] == "interpolation"
    assert httpx.get(running.url + "/healthz").json()["status"] == "ok"


def test_chat_plain_and_with_preference(running):
    c = client(running)
    plain = c.chat.completions.create(model="base",
                                      messages=[{"role": "user", "content": "how do i bake bread ?"}],
                                      max_tokens=24, seed=1)
    text = plain.choices[0].message.content
    assert text and plain.choices[0].finish_reason in ("stop", "length")
    # "<user> how do i bake bread ? <assistant>"
    assert plain.usage.prompt_tokens == 8 and 0 < plain.usage.completion_tokens <= 24
    assert plain.usage.total_tokens == plain.usage.prompt_tokens + plain.usage.completion_tokens
    answers = {}
    for w in (0.0, 1.0):
        r = c.chat.completions.create(model="soup",
                                      messages=[{"role": "user", "content": "how do i fix my bike ?"}],
                                      max_tokens=32, temperature=0,
                                      extra_body={"preference": {"helpful": w, "harmless": 1 - w}})
        answers[w] = r.choices[0].message.content
    # greedy answers equal the checkpoint's own generation for the same steering
    from moalign.steerable import load_steerable
    soup = load_steerable(running.server.engines["soup"].policy.path)
    for w, text in answers.items():
        assert text == soup.generate(["how do i fix my bike ?"], preference={"helpful": w, "harmless": 1 - w},
                                     max_new_tokens=32, do_sample=False)[0]
    assert answers[0.0] != answers[1.0]
    for spec in ("helpful=0,harmless=1", [0, 1]):  # the preference forms the CLI and Python take
        r = c.chat.completions.create(model="soup",
                                      messages=[{"role": "user", "content": "how do i fix my bike ?"}],
                                      max_tokens=32, temperature=0, extra_body={"preference": spec})
        assert r.choices[0].message.content == answers[0.0]
    # the standard `user` field is accepted (and ignored by checkpoints that know no users)
    u = c.chat.completions.create(model="base", messages=[{"role": "user", "content": "hi"}], user="alice",
                                  max_tokens=4)
    assert u.choices[0].message.content is not None


def test_streaming_matches_the_plain_answer(running):
    c = client(running)
    kwargs = dict(model="soup", messages=[{"role": "user", "content": "how do i brew coffee ?"}],
                  max_tokens=24, temperature=0, extra_body={"preference": {"helpful": 0.3, "harmless": 0.7}})
    whole = c.chat.completions.create(**kwargs).choices[0].message.content
    chunks = list(c.chat.completions.create(stream=True, **kwargs))
    pieces = [ch.choices[0].delta.content or "" for ch in chunks]
    assert len([p for p in pieces if p]) > 3  # several chunks, not one
    assert "".join(pieces).strip() == whole
    assert (chunks[-1].choices[0].finish_reason in ("stop", "length") and
            chunks[-1].usage.completion_tokens > 0)


def test_completions_endpoint(running):
    r = client(running).completions.create(model="base",
                                           prompt=["how do i bake bread ?", "how do i play chess ?"],
                                           max_tokens=8, temperature=0)
    assert [ch.index for ch in r.choices] == [0, 1] and all(ch.text for ch in r.choices)
    streamed = list(client(running).completions.create(model="base", prompt="how do i play chess ?",
                                                        max_tokens=8, temperature=0, stream=True))
    assert "".join(ch.choices[0].text for ch in streamed).strip() == r.choices[1].text


def test_same_steering_is_batched(running):
    engine = running.server.engines["soup"]
    before = engine.batches

    def ask(i):
        return httpx.post(running.url + "/v1/chat/completions", timeout=60, json={
            "model": "soup", "messages": [{"role": "user", "content": f"how do i bake bread ? {i}"}],
            "max_tokens": 16, "seed": 3, "preference": {"helpful": 0.5, "harmless": 0.5}})

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(ask, range(8)))
    assert all(r.status_code == 200 for r in responses)
    assert engine.batches - before < 8  # at least two requests shared a generate call


def test_every_checkpoint_generates_on_one_thread(running, monkeypatch):
    """Two threads that run torch ops each get an OpenMP pool, and two pools on the same cores slow
    every small op 1.7x (the engine's docstring): both checkpoints' generations share one thread."""
    import threading

    from moalign.serve import engine as engine_module
    seen = []
    for engine in running.server.engines.values():
        complete = engine.policy.complete

        def spy(*args, complete=complete, **kwargs):
            seen.append(threading.get_ident())
            return complete(*args, **kwargs)
        monkeypatch.setattr(engine.policy, "complete", spy)
    for model in ("base", "soup"):
        r = client(running).chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=4)
        assert r.choices[0].message.content is not None
    assert len(seen) == 2 and seen[0] == seen[1] != threading.get_ident()
    assert {e.executor for e in running.server.engines.values()} == {engine_module.model_thread()}


BAD = [
    ({"model": "nope", "messages": [{"role": "user", "content": "hi"}]}, 404, "not found"),
    ({"model": "soup", "messages": [{"role": "user", "content": "hi"}], "preference": {"wit": 1}}, 400,
     "unknown objective"),
    ({"model": "soup", "messages": [{"role": "user", "content": "hi"}], "preference": {"helpful": -1}}, 400,
     "negative"),
    ({"model": "soup", "messages": []}, 400, "messages"),
    ({"model": "soup", "messages": [{"role": "user", "content": "  "}]}, 400, "no user message"),
    ({"model": "soup", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1000}, 400,
     "cap of 128"),
    ({"model": "soup", "messages": [{"role": "user", "content": "bread " * 100}]}, 400, "cap of 64"),
    ({"model": "soup", "messages": [{"role": "robot", "content": "hi"}]}, 400, "role"),
    ({"messages": [{"role": "user", "content": "hi"}]}, 400, "model"),
]


@pytest.mark.parametrize("body,status,needle", BAD)
def test_bad_requests_are_4xx_with_openai_errors(running, body, status, needle):
    r = httpx.post(running.url + "/v1/chat/completions", json=body, timeout=30)
    assert r.status_code == status, r.text
    assert needle in r.json()["error"]["message"]


def test_malformed_json_and_nan_then_still_serving(running):
    url = running.url + "/v1/chat/completions"
    r = httpx.post(url, content=b'{"model": "soup", "messages": [',
                   headers={"content-type": "application/json"})
    assert r.status_code == 400 and "error" in r.json()
    body = ('{"model": "soup", "messages": [{"role": "user", "content": "hi"}], '
            '"preference": {"helpful": NaN}}')
    r = httpx.post(url, content=body.encode(), headers={"content-type": "application/json"})
    assert r.status_code == 400 and "not finite" in r.json()["error"]["message"]
    r = httpx.post(url, json={"model": "soup", "messages": [{"role": "user", "content": "hi"}],
                              "max_tokens": 4})
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["role"] == "assistant"


def test_api_key(running_with_key):
    url = running_with_key.url
    assert httpx.get(url + "/healthz").status_code == 200
    assert httpx.get(url + "/").status_code == 200  # the page itself is public; it asks for the key
    r = httpx.get(url + "/v1/models")
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(url + "/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
    with pytest.raises(openai.AuthenticationError):
        client(running_with_key, "wrong").models.list()
    ok = client(running_with_key, "sesame").chat.completions.create(
        model="base", messages=[{"role": "user", "content": "hi"}], max_tokens=4)
    assert ok.choices[0].message.content is not None


def test_no_request_reads_a_path(running):
    r = httpx.get(running.url + "/v1/models/..%2F..%2Fetc%2Fpasswd/front.png")
    assert r.status_code == 404
    r = httpx.post(running.url + "/v1/chat/completions",
                   json={"model": "/etc", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 404
