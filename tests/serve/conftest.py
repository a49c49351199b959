import pytest


@pytest.fixture(scope="module")
def running(base_dir, soup_dir):
    from moalign.serve.app import BackgroundServer, create_app, load_server
    server = load_server([f"base={base_dir}", f"soup={soup_dir}"], max_tokens_cap=128, max_prompt_tokens=64)
    with BackgroundServer(create_app(server), server) as r:
        yield r


@pytest.fixture(scope="module")
def running_with_key(base_dir):
    from moalign.serve.app import BackgroundServer, create_app, load_server
    server = load_server([f"base={base_dir}"], api_key="sesame")
    with BackgroundServer(create_app(server), server) as r:
        yield r
