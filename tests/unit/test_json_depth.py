"""The body reader's depth count peels brackets level by level; it must agree with a plain
scan of every bracket outside strings on any document, valid or not."""

from __future__ import annotations

import json
import random

from gateway.body import _scan_depth, json_depth

LIMIT = 64


def agree(text: str) -> bool:
    fast, exact = json_depth(text, LIMIT), _scan_depth(text, LIMIT)
    return fast == exact or (fast > LIMIT and exact > LIMIT)


def test_edge_cases_agree_with_the_plain_scan():
    for text in ['{}', '[]', '[{}]', '[[],[[]]]', '{"a":"[[[[","b":[1,{"c":[]}]}', '"x"', '1',
                 '[[[[', '[}', ']]][[[', '{"a":"\\"]"}', '[' * 70 + ']' * 70, '[' * 70,
                 '{"unterminated": "[[', '']:
        assert agree(text), text


def test_random_documents_agree_with_the_plain_scan():
    rng = random.Random(7)

    def doc(depth: int) -> object:
        if depth == 0 or rng.random() < 0.3:
            return rng.choice([1, "s]{", None, 'q\\"[', 2.5])
        if rng.random() < 0.5:
            return [doc(depth - 1) for _ in range(rng.randint(0, 3))]
        return {f"k{i}": doc(depth - 1) for i in range(rng.randint(0, 3))}

    for _ in range(2000):
        text = json.dumps(doc(rng.randint(0, 80)))
        assert agree(text), text
        assert agree(text[: rng.randint(0, len(text))]), text  # cut short: not valid JSON
