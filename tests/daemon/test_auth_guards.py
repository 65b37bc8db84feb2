"""The token-length guard at its boundary (issue 12, item 11: only 5 characters were tested)."""

from __future__ import annotations

import pytest

from service.auth import TokenBook, parse_tokens
from service.errors import ConfigError


@pytest.mark.parametrize("length", [8, 15])
def test_a_token_shorter_than_16_characters_is_refused(length):
    token = "k" * length
    with pytest.raises(ConfigError, match="shorter than 16") as info:
        parse_tokens(f"ops:{token}:read")
    assert token not in str(info.value)
    with pytest.raises(ConfigError, match="shorter than 16"):  # the JSON form too
        parse_tokens(f'[{{"name": "ops", "token": "{token}", "scopes": ["read"]}}]')


def test_a_token_of_exactly_16_characters_is_accepted():
    [who] = parse_tokens(f"ops:{'k' * 16}:read+act")
    assert who.name == "ops" and who.scopes == {"read", "act"}
    book = TokenBook(f"ops:{'k' * 16}:read")
    assert book.lookup("k" * 16).name == "ops"
    assert book.lookup("k" * 15) is None and book.lookup("k" * 17) is None


def test_one_short_token_among_good_ones_refuses_the_whole_setting():
    good = f"a:{'x' * 16}:read"
    with pytest.raises(ConfigError, match=r"entry 2 \('b'\).*shorter than 16"):
        parse_tokens(f"{good},b:{'y' * 15}:ingest")
