"""Settings of the summarizer service (`SORIFLOW_SUMMARIZER_*`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

from soriflow.config import ServiceSettings


class Settings(ServiceSettings):
    """Summarizer: engine, model, adapter and device; limits, batching and generation defaults."""

    port: int = Field(50053, ge=0, le=65535, description="gRPC port (0 picks a free one).")
    metrics_port: int | None = Field(9153, ge=0, le=65535, description="Prometheus port (empty disables).")

    summarizer_engine: Literal["causal-lm", "seq2seq", "llama-cpp", "openai", "extractive"] = Field(
        "causal-lm",
        description="Engine for the configured model: `causal-lm` / `seq2seq` (transformers), `llama-cpp` "
        "(a GGUF file in-process with llama.cpp; needs `llama-cpp-python`), `openai` (any "
        "OpenAI-compatible chat server: vLLM, TGI, llama.cpp server, Ollama); `extractive` needs no model.",
    )
    summarizer_model: str = Field(
        "smollm2-135m-instruct",
        description="Model: a bundled name, a local path (HF folder or .gguf), an `s3://` prefix "
        "or `pkg:` spec; with `openai`, the model name the server serves.",
    )
    summarizer_adapter: str | None = Field(None, description="LoRA adapter (path or `s3://`) loaded on top.")
    summarizer_device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="`auto` uses CUDA when present."
    )
    summarizer_dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="Weights precision: `auto` is float32 on CPU, bfloat16 (or float16) on CUDA."
    )
    summarizer_languages: list[str] | None = Field(
        None,
        description="Languages (ISO 639-1) the model writes; other languages go to extractive. "
        'Unset: the bundled model\'s (`["en"]` for SmolLM2), any for other models; `[]`: any.',
    )
    summarizer_cpu_threads: int = Field(
        0,
        ge=0,
        description="Torch (and llama.cpp) CPU threads (0: the library's default, one per core the "
        "process may use).",
    )

    # OpenAI-compatible chat server (SORIFLOW_SUMMARIZER_ENGINE=openai)
    summarizer_openai_base_url: str = Field(
        "http://127.0.0.1:8000/v1",
        description="Base URL of the OpenAI-compatible API, up to and including `/v1` "
        "(vLLM, TGI, llama.cpp server, Ollama: `http://host:11434/v1`).",
    )
    summarizer_openai_api_key: SecretStr | None = Field(
        None,
        description="API key sent as `Authorization: Bearer`; prefer `summarizer_openai_api_key_file`. "
        "Unset with no file: a placeholder key (servers without auth ignore it).",
    )
    summarizer_openai_api_key_file: Path | None = Field(
        None,
        description="File holding the API key (a mounted secret; surrounding whitespace is dropped); wins "
        "over `summarizer_openai_api_key`.",
    )
    summarizer_openai_connect_timeout_s: float = Field(
        5.0, gt=0, description="Seconds to open a connection to the chat server."
    )
    summarizer_openai_read_timeout_s: float = Field(
        30.0,
        gt=0,
        description="Most seconds the chat server may stay silent (before its first token, or between "
        "two); past it the attempt fails and is retried.",
    )
    summarizer_openai_max_retries: int = Field(
        3,
        ge=0,
        le=10,
        description="Retries of a chat request after 408/409/429/5xx answers, connection errors and "
        "timeouts (exponential backoff from 0.5 s, at most 8 s, jittered; `Retry-After` honoured), "
        "all within the generation deadline.",
    )
    summarizer_openai_max_concurrency: int = Field(
        16,
        ge=1,
        le=1024,
        description="Chat requests in flight to the server at once (it batches them itself); more wait.",
    )
    summarizer_openai_extra_body: dict[str, object] = Field(
        default_factory=dict,
        description="Extra fields of every chat request, for server-specific sampling options, e.g. "
        '`{"repetition_penalty": 1.1}` (vLLM) or `{"repeat_penalty": 1.1}` (llama.cpp).',
    )

    summarizer_inquiry_engine: str = Field(
        "faithful",
        description="Engine for the `inquiry` style when a request names none: `faithful` (compressed "
        "from the caller's own words, Korean and English; no model) or any loaded engine's name; empty: "
        "the same engine as the other styles.",
    )
    summarizer_grounding: Literal["enforce", "report", "off"] = Field(
        "enforce",
        description="Grounding check of every summary against its source: `enforce` retries an LM summary "
        "that names things the source lacks once under a stricter prompt, then replaces it with the "
        "faithful engine's; `report` only reports (`grounded`, `unsupported_terms`); `off` skips the check.",
    )

    # Limits
    summarizer_max_input_chars: int = Field(
        100_000, gt=0, description="Hard limit on input length in characters; beyond it RESOURCE_EXHAUSTED."
    )
    summarizer_max_input_tokens: int | None = Field(
        None,
        gt=0,
        description="Hard limit on input length in model tokens (unset: only the character limit applies).",
    )
    summarizer_max_output_tokens: int = Field(
        128, gt=0, description="Default summary length bound in tokens (the team's KoBART setting)."
    )
    summarizer_max_output_tokens_limit: int = Field(
        1024,
        gt=0,
        description="Largest `max_output_tokens` a request may ask for; above it INVALID_ARGUMENT.",
    )
    summarizer_chunk_tokens: int = Field(
        1536,
        ge=64,
        description="Largest input chunk in tokens (also capped by the model's context): longer inputs "
        "are split at sentence boundaries and summarized map-reduce.",
    )
    summarizer_context_tokens: int | None = Field(
        None,
        gt=0,
        description="Override of the model's context window in tokens (unset: the model config's; "
        "`llama-cpp`: the GGUF's, at most 4096; `openai`: 4096).",
    )
    summarizer_generation_timeout_s: float = Field(
        60.0,
        gt=0,
        description="Most seconds one summary request may take, queueing, map-reduce and retries "
        "included (a shorter gRPC deadline of the request wins); past it the request fails with "
        "DEADLINE_EXCEEDED naming this setting.",
    )

    # Dynamic batching
    summarizer_max_batch_size: int = Field(
        8, ge=1, le=256, description="Most requests (or chunks) generated together in one padded batch."
    )
    summarizer_max_wait_ms: float = Field(
        15.0, ge=0, description="How long the first request of a batch waits for others to join."
    )
    summarizer_max_waiting: int = Field(
        64, ge=0, description="Generations allowed to wait for the model; beyond that RESOURCE_EXHAUSTED."
    )
    summarizer_retry_after_s: float = Field(
        2.0, gt=0, description="Retry hint sent with RESOURCE_EXHAUSTED when the queue is full."
    )

    # Generation
    summarizer_num_beams: int | None = Field(
        None,
        ge=1,
        le=16,
        description="Beam search width (unset: 4 for seq2seq as the team used, 1 for causal LMs).",
    )
    summarizer_no_repeat_ngram_size: int = Field(
        3, ge=0, description="Forbid repeating n-grams of this size in a summary (0: off)."
    )
    summarizer_repetition_penalty: float = Field(
        1.1,
        ge=1.0,
        le=2.0,
        description="Repetition penalty of causal LMs (1: off); small LMs loop without it.",
    )
    summarizer_seq2seq_prefix: str = Field(
        "", description='Text put before the input of seq2seq models (T5 wants "summarize: ").'
    )
    summarizer_prompts: dict[str, str] = Field(
        default_factory=dict,
        description="Instruction templates of causal LMs by style (`inquiry`, `bullets`, `abstract`), "
        "replacing the built-in ones; `{text}` marks the text, `{label}` its label, `{language}` a "
        "hint to write in the input's language (`{language_name}`: its bare name). "
        'JSON: `{"inquiry": "...\\n\\n{label}: {text}"}`.',
    )
    summarizer_prompt_role: Literal["user", "system"] = Field(
        "user",
        description="Turn that carries the style's instruction for causal LMs: `user` (with the text; the "
        "model's default system prompt stays; small models such as SmolLM2-135M follow it best) or "
        "`system` (the instruction as system prompt, the text as user turn; for Llama 3.2, Qwen, ...).",
    )

    # Evaluation
    summarizer_bertscore_model: str | None = Field(
        None,
        description="Local encoder (HF folder, `s3://`, `pkg:`) for BERTScore in `soriflow eval summarize` "
        "and in the validation of `soriflow train summarizer`; unset: BERTScore is skipped.",
    )
