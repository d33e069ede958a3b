"""A tiny causal LM saved like a real model, for the adapter, prompt-runner and benchmark tests.

A 2-layer Llama with a byte-level BPE tokenizer trained here on a few sentences, so merges like
" Paris" exist and the space-handling cases of the token boundary rule are real.
"""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "The capital of France is Paris. The capital of Germany is Berlin.",
    "The capital of Italy is Rome. The capital of Spain is Madrid.",
    "Question: is the sky blue? Answer: yes. Question: is grass red? Answer: no.",
    "A cat sat on the mat and the dog ran in the park.",
    "Paris and Berlin and Rome are large cities in Europe.",
] * 4


def build_tiny_llama(folder: Path) -> Path:
    """A tiny random Llama with a byte-level BPE tokenizer trained on ``CORPUS`` (vocabulary 400,
    so that " Paris" is one token), saved as a safetensors folder. Shared with the benchmark."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2TokenizerFast, LlamaConfig, LlamaForCausalLM

    folder.mkdir(parents=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS, vocab_size=400, min_frequency=1, special_tokens=["<|eos|>"])
    tokenizer = GPT2TokenizerFast(tokenizer_object=bpe, eos_token="<|eos|>", model_max_length=128)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        # Far above the usual 0.02 so log-probs differ a lot between tokens and positions: a
        # padding or offset bug moves them by far more than the 1e-4 allowed.
        initializer_range=0.3,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        pad_token_id=None,
    )
    LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    return folder
