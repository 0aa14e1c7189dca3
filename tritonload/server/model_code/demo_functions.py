"""Deterministic demo-model functions: inputs (dict of batched arrays) -> outputs.

Shared by the Triton Python-backend model (model.py, which Triton runs in its stub process
with this file beside it) and by tests, which recompute expected outputs with them.
"""

import zlib

import numpy as np

RANKER_ITEMS = 14041
VOCABULARY = 32000
MAX_TOKENS_LIMIT = 4096
WIDE_RANKER_ROWS = 512


def text_classifier(inputs):
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    token_sum = (ids * mask).sum(axis=1) % 10007
    return {"logits": token_sum[:, None].astype(np.float32) + np.arange(10, dtype=np.float32)}


def image_classifier(inputs):
    images = inputs["images"]
    return {"predictions": images.reshape(images.shape[0], -1)[:, :1000] * np.float32(2)}


def preprocess(inputs):
    # Camera layout (height, width, channel) bytes to the classifier's normalised planes.
    raw = inputs["raw_images"]
    return {"images": raw.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255)}


def recommender(inputs):
    score = (inputs["user_features"] * inputs["item_features"]).sum(axis=1, keepdims=True)
    return {"score": score.astype(np.float32)}


def _ranker(inputs, rows):
    query_sum = inputs["query"].sum(axis=1, dtype=np.float32)
    items = np.arange(RANKER_ITEMS, dtype=np.float32)
    row = query_sum[:, None] + items[None, :]
    if rows is None:
        return {"scores": row}
    # The wide output really materialises rows x items floats per item (about 29 MB).
    wide = np.broadcast_to(row[:, None, :], (len(row), rows, RANKER_ITEMS))
    return {"scores": np.ascontiguousarray(wide)}


FUNCTIONS = {
    "text_classifier": text_classifier,
    "image_classifier": image_classifier,
    "recommender": recommender,
    "preprocess": preprocess,
    "wide_ranker": lambda inputs: _ranker(inputs, WIDE_RANKER_ROWS),
    "narrow_ranker": lambda inputs: _ranker(inputs, None),
}


# text_generator (generator.py): its tokens, a function of the prompt and the position.
def generated_token(prompt: bytes, position: int) -> int:
    """The id of the token at ``position`` (0-based) generated for ``prompt``."""
    return (zlib.crc32(prompt) + 7919 * position) % VOCABULARY


def ids_prompt(ids) -> bytes:
    """A prompt given as token ids, as the text the tokens are generated from."""
    return b" ".join(b"%d" % int(i) for i in ids)


def token_text(token_id: int) -> bytes:
    """The text a token id stands for, with its trailing space."""
    return b"t%d " % token_id


def abort_after(prompt: bytes) -> int | None:
    """The token count after which an ``ABORT@k`` prompt is aborted, else None."""
    if not prompt.startswith(b"ABORT@"):
        return None
    digits = prompt[6:].split(maxsplit=1)[0] if len(prompt) > 6 else b""
    return int(digits) if digits.isdigit() else 0
