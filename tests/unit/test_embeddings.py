"""text.embed's model, run directly: the published embedding of the model card's sentence,
batches equal to single calls, and a bad input refused."""

from __future__ import annotations

import numpy as np
import pytest

from corral.tasks import embeddings, registry
from corral.tasks.context import Context

# The first five dimensions sentence-transformers gives for all-MiniLM-L6-v2 on this text.
CARD = ("This is an example sentence", [0.0676569, 0.0634956, 0.0487131, 0.0793050, 0.0374481])


@pytest.fixture(scope="module")
def model() -> embeddings.MiniLM:
    return embeddings.load()


def test_the_model_gives_the_published_embedding(model: embeddings.MiniLM) -> None:
    (vector,) = model.embed([CARD[0]])
    assert vector.shape == (384,) and abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5
    assert np.allclose(vector[:5], CARD[1], atol=2e-5)


def test_a_batch_of_texts_of_different_lengths_equals_one_call_per_text(model: embeddings.MiniLM) -> None:
    texts = ["a", "Four score and seven years ago our fathers brought forth on this continent", "GPU"]
    together = model.embed(texts)
    alone = np.stack([model.embed([t])[0] for t in texts])
    assert np.allclose(together, alone, atol=1e-5)


def test_an_input_that_is_not_text_is_refused_with_what_it_should_be(model: embeddings.MiniLM) -> None:
    ctx = Context("t", "t.a1", "n", 0, "s", state=model)
    with pytest.raises(ValueError, match="text.embed takes"):
        registry.get("text.embed").fn([{"text": "fine"}, {"image": "no"}], ctx)
