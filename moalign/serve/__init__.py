"""Serving steerable checkpoints: an OpenAI-compatible API (FastAPI) and a playground page."""
