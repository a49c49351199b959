import pytest
import torch
from transformers import AutoModelForCausalLM


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
