import importlib

from moalign.docs import key_rows, pages
from moalign.registry import REGISTRY


def test_docs_pages_match_the_code():
    drifted = [str(page) for page, text in pages().items() if page.read_text() != text]
    assert not drifted, (f"generated docs drifted from the code: {', '.join(drifted)}; "
                         "run python -m moalign.docs")


def test_every_recipe_key_has_a_description():
    missing = [f"{m.name}: {key}" for m in REGISTRY
               for key, _, description in key_rows(importlib.import_module(m.module).Config)
               if not description.strip()]
    assert not missing, f"recipe keys without a Field(description=...): {', '.join(missing)}"
