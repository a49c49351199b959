import socket
import threading
import time

import pytest
import torch
import uvicorn
from transformers import AutoModelForCausalLM


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def soup_dir(base_dir, tmp_path_factory):
    """A soup of the world base and two perturbed copies: steering visibly changes the answers."""
    from moalign.soups.soup import build
    from moalign.world.base import build_tokenizer
    root = tmp_path_factory.mktemp("serve-soup")
    tok = build_tokenizer()
    for i, name in enumerate(("helpful", "harmless")):
        model = AutoModelForCausalLM.from_pretrained(base_dir)
        torch.manual_seed(i)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.05)
        model.save_pretrained(root / name)
        tok.save_pretrained(root / name)
    build(str(base_dir), {"helpful": str(root / "helpful"), "harmless": str(root / "harmless")}, root / "soup")
    return root / "soup"


class Running:
    def __init__(self, app, server):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = server
        self.uvicorn = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error"))
        self.thread = threading.Thread(target=self.uvicorn.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 30
        while not self.uvicorn.started:
            assert time.time() < deadline, "server did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.uvicorn.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def running(base_dir, soup_dir):
    from moalign.serve.app import create_app, load_server
    server = load_server([f"base={base_dir}", f"soup={soup_dir}"], max_tokens_cap=128, max_prompt_tokens=64)
    with Running(create_app(server), server) as r:
        yield r


@pytest.fixture(scope="module")
def running_with_key(base_dir):
    from moalign.serve.app import create_app, load_server
    server = load_server([f"base={base_dir}"], api_key="sesame")
    with Running(create_app(server), server) as r:
        yield r
