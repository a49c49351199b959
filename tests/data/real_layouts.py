"""Helpers of the real-layout fixtures (conftest.py) and tests."""
import json


def jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def world_rows(name, n):
    from moalign.world import resolve
    return [json.loads(line) for line in open(resolve(f"world:{name}"))][:n]


def transcript(*turns) -> str:
    """An Anthropic HH-RLHF transcript: alternating Human / Assistant turns."""
    return "".join(f"\n\n{'Human' if i % 2 == 0 else 'Assistant'}: {t}" for i, t in enumerate(turns))


PKU_COLUMNS = "{better_helpful: better_response_id, better_harmless: safer_response_id}"
