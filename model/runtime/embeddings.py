"""Sentence embeddings for team memory: one small interface, three ways to get them.

- `StaticEmbedder`, the embedded default: WordLlama's static token embeddings, whose weights and
  tokenizer ship inside the `wordllama` wheel. Nothing is downloaded, no GPU, ~1 ms a question.
- `SentenceTransformersEmbedder`: any local sentence-transformers directory
  (`SECBOT_EMBEDDING_MODEL=/models/bge-m3`), loaded offline; on the GPU host, `secbot serve-model
  --embedding-model DIR` serves it as `POST /v1/embeddings`.
- `ServerEmbedder`: an OpenAI-compatible `/v1/embeddings` (that server, vLLM, ...), reached the
  way the bot reaches the chat model.

Every embedder returns unit-length float32 rows and names itself (`name`), so vectors made by one
model are never compared with another's.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np

from secbot.model.errors import ModelError


class EmbeddingError(ModelError):
    """An embedding model could not be loaded or did not answer."""


class Embedder(Protocol):
    name: str  # model identity: vectors from different names are never mixed
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32, each row of unit length (zero for an empty text)."""


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


class StaticEmbedder:
    """WordLlama (l2_supercat, 256 dimensions) from the files inside its wheel."""

    CONFIG = "l2_supercat"

    def __init__(self, dim: int = 256):
        self.dim = dim
        self.name = f"wordllama-{self.CONFIG}-{dim}"
        self._model = _wordllama(dim)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return unit_rows(self._model.embed(list(texts)))


@lru_cache(maxsize=2)
def _wordllama(dim: int):
    import wordllama
    from safetensors import safe_open
    from tokenizers import Tokenizer
    from wordllama.inference import WordLlamaInference

    root = Path(wordllama.__file__).parent
    weights = root / "weights" / f"{StaticEmbedder.CONFIG}_256.safetensors"
    tokenizer = root / "tokenizers" / f"{StaticEmbedder.CONFIG}_tokenizer_config.json"
    if not weights.exists() or not tokenizer.exists():
        raise EmbeddingError(f"the wordllama package has no embedded {StaticEmbedder.CONFIG} weights "
                             f"({weights.name}); reinstall it (pip install 'wordllama>=0.4') or set "
                             "SECBOT_EMBEDDING_MODEL=off")
    with safe_open(str(weights), framework="np", device="cpu") as f:
        matrix = f.get_tensor("embedding.weight")[:, :dim]
    return WordLlamaInference(matrix, Tokenizer.from_file(str(tokenizer)))


class SentenceTransformersEmbedder:
    """A local sentence-transformers directory, loaded without touching the network."""

    def __init__(self, path: str | Path, device: str | None = None, batch_size: int = 64):
        path = Path(path).expanduser()
        if not (path / "modules.json").exists() and not (path / "config.json").exists():
            raise EmbeddingError(f"{path} is not a sentence-transformers model directory (no modules.json "
                                 "or config.json); point SECBOT_EMBEDDING_MODEL at the downloaded model")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise EmbeddingError("SECBOT_EMBEDDING_MODEL names a directory, which needs sentence-transformers: "
                                 "pip install 'secbot[embeddings]'") from exc
        self._model = SentenceTransformer(str(path), device=device, local_files_only=True)
        self.batch_size = batch_size
        self.dim = int(self._model.get_sentence_embedding_dimension())
        self.name = f"st-{path.name}-{self.dim}"

    def count_tokens(self, texts: Sequence[str]) -> int:
        return sum(len(ids) for ids in self._model.tokenizer(list(texts))["input_ids"])

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return unit_rows(self._model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True,
                                            normalize_embeddings=True, show_progress_bar=False))


class ServerEmbedder:
    """`POST {base}/v1/embeddings`, OpenAI's protocol (base64 float32 or float lists)."""

    def __init__(self, base_url: str, api_key: str | None = None, model: str = "secbot-embedding",
                 timeout: float = 30.0):
        import httpx

        root = base_url.rstrip("/")
        self.base = root[: -len("/v1")] if root.endswith("/v1") else root
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(headers=headers, timeout=httpx.Timeout(timeout, connect=10.0))
        self.model = model
        probe = self._request(["dimension probe"])
        self.dim = probe.shape[1]
        self.name = f"server-{self.served_model}-{self.dim}"

    def _request(self, texts: list[str]) -> np.ndarray:
        import httpx

        try:
            response = self.http.post(self.base + "/v1/embeddings", json={
                "model": self.model, "input": texts, "encoding_format": "base64"})
        except httpx.HTTPError as exc:
            raise EmbeddingError(f"embedding server at {self.base} unreachable: {exc}") from exc
        if response.status_code != 200:
            raise EmbeddingError(f"embedding server at {self.base} answered {response.status_code}: "
                                 f"{response.text[:300]}")
        body = response.json()
        self.served_model = body.get("model") or self.model
        rows = sorted(body["data"], key=lambda d: d["index"])
        return np.stack([decode_embedding(row["embedding"]) for row in rows])

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return unit_rows(self._request(list(texts)))


def decode_embedding(value: str | list[float]) -> np.ndarray:
    if isinstance(value, str):
        return np.frombuffer(base64.b64decode(value), dtype="<f4").astype(np.float32)
    return np.asarray(value, dtype=np.float32)


def encode_embedding(vector: np.ndarray, encoding_format: str) -> str | list[float]:
    if encoding_format == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
    return [float(x) for x in vector]
