"""Tiny models built by the tests: a byte-level BPE tokenizer, a Llama-style causal LM, a BART.

Random weights: they exercise loading, batching, streaming, chunking and LoRA
plumbing through the real transformers/peft code, not summary quality.
"""

from __future__ import annotations

from pathlib import Path

CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

CORPUS = [
    "I was in a car accident yesterday and want to know if my insurance covers the repair.",
    "Please check whether the rental car is covered while my car is repaired.",
    "My package did not arrive and I would like a refund for the order.",
    "The customer asks about a refund for a late delivery.",
    "Summarize the customer's request below in one short line.",
    "Summarize the following text in two or three sentences.",
    "Summarize the following text as 3 to 5 short bullet points, each line starting with '- '.",
    "Summarize this part of a longer text in a few sentences, keeping every request, name, number and date.",
    "Customer Text Conversation Write the summary in Korean. Focus on what says and asks.",
    "insurance claim check refund request delivery status rental car coverage",
    "자동차 사고 보험 여부 확인 요청 환불 배송 문의",
]


def build_tokenizer(folder: Path) -> object:
    """A byte-level BPE tokenizer trained on CORPUS, with ChatML special tokens and template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    specials = ["<pad>", "<s>", "</s>", "<unk>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(CORPUS * 4, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )
    fast.chat_template = CHATML
    fast.save_pretrained(folder)
    return fast


def build_causal(folder: Path, *, context: int = 512) -> Path:
    """A 2-layer Llama with a ChatML template; end of turn is `<|im_end|>`."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(folder)
    # The chat turn ends with <|im_end|>: make it the tokenizer's end token, as SmolLM2's is.
    tokenizer.eos_token = "<|im_end|>"  # type: ignore[attr-defined]
    tokenizer.save_pretrained(folder)  # type: ignore[attr-defined]
    vocab = len(tokenizer)  # type: ignore[arg-type]
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")  # type: ignore[attr-defined]
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=context,
        bos_token_id=tokenizer.bos_token_id,  # type: ignore[attr-defined]
        eos_token_id=eos,
        pad_token_id=tokenizer.pad_token_id,  # type: ignore[attr-defined]
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id, eos_token_id=eos, pad_token_id=config.pad_token_id
    )
    model.save_pretrained(folder)
    return folder


def build_bart(folder: Path, *, context: int = 64) -> Path:
    """A 1+1-layer BART whose encoder reads at most `context` positions (to force chunking)."""
    import torch
    from transformers import BartConfig, BartForConditionalGeneration, GenerationConfig

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(folder)
    config = BartConfig(
        vocab_size=len(tokenizer),  # type: ignore[arg-type]
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=context,
        pad_token_id=tokenizer.pad_token_id,  # type: ignore[attr-defined]
        bos_token_id=tokenizer.bos_token_id,  # type: ignore[attr-defined]
        eos_token_id=tokenizer.eos_token_id,  # type: ignore[attr-defined]
        decoder_start_token_id=tokenizer.eos_token_id,  # type: ignore[attr-defined]
        forced_bos_token_id=tokenizer.bos_token_id,  # type: ignore[attr-defined]
    )
    torch.manual_seed(0)
    model = BartForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        decoder_start_token_id=config.decoder_start_token_id,
        forced_bos_token_id=tokenizer.bos_token_id,  # type: ignore[attr-defined]
    )
    model.save_pretrained(folder)
    return folder
