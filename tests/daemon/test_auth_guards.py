"""The token-length guard at its boundary (issue 12, item 11: only 5 characters were tested)."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from common.errors import ConfigError
from service.auth import ANONYMOUS, TokenBook, parse_tokens
from tests.daemon.conftest import bearer


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


@pytest.mark.parametrize(
    "raw",
    [
        '[{"name": "a", "token": "0123456789abcdef"}]',  # no scopes
        '[{"token": "0123456789abcdef", "scopes": ["read"]}]',  # no name
        '["a:0123456789abcdef:read"]',  # not an object
    ],
)
def test_a_json_entry_without_name_token_and_scopes_is_refused(raw):
    with pytest.raises(ConfigError, match=r"TIDEWISE_TOKENS\[0\]: give an object") as info:
        parse_tokens(raw)
    assert "0123456789abcdef" not in str(info.value)


def test_the_token_book_never_shows_a_token_or_its_digest():
    token = "s3cret-token-0123456789"
    book = TokenBook(f"ops:{token}:read")
    shown = repr(vars(book)) + repr(book.principals())
    assert "ops" in shown
    assert token not in shown
    digest = hashlib.sha256(token.encode()).digest()
    assert repr(digest) not in shown and digest.hex() not in shown


def test_a_principal_cannot_be_altered_after_authentication():
    # the anonymous principal is one shared object: changing it would change every request's
    who = parse_tokens(f"ops:{'k' * 16}:read")[0]
    for p in (who, ANONYMOUS):
        with pytest.raises(dataclasses.FrozenInstanceError):
            p.scopes = frozenset({"read", "act"})


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_401_and_403_answers_name_the_error_the_way_rfc_6750_does(anon):
    """401: a challenge without an error code; 403: ``error="insufficient_scope"``."""
    r = anon.get("/v1/entities")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer realm="tidewise", scope="read"'
    assert r.json()["error"] == "Unauthorized" and r.json()["scope"] == "read"

    r = anon.get("/v1/entities", headers=bearer("ingest"))
    assert r.status_code == 403
    assert r.headers["www-authenticate"] == (
        'Bearer realm="tidewise", error="insufficient_scope", scope="read"'
    )
    assert r.json()["error"] == "Forbidden" and r.json()["scope"] == "read"


@pytest.mark.parametrize(
    "raw",
    [
        f"ops:{'k' * 8} {'k' * 8}:read",  # a space inside the token
        f'[{{"name": "ops", "token": "{"k" * 8}:{"k" * 8}", "scopes": ["read"]}}]',
        f'[{{"name": "ops", "token": "{"k" * 8},{"k" * 8}", "scopes": ["read"]}}]',
    ],
)
def test_a_token_with_a_space_colon_or_comma_is_refused(raw):
    # it could not be written in the NAME:TOKEN:SCOPES form, nor sent in a header unchanged
    with pytest.raises(ConfigError, match="must not hold spaces"):
        parse_tokens(raw)


@pytest.mark.parametrize("name", ["ops/1", "ops 1", "ops@x", "é-ops!"])
def test_a_token_name_outside_letters_digits_dash_underscore_dot_is_refused(name):
    with pytest.raises(ConfigError, match="name must be letters"):
        parse_tokens(f"{name}:{'k' * 16}:read")
    [who] = parse_tokens(f"ops-1.a_b:{'k' * 16}:read")
    assert who.name == "ops-1.a_b"


@pytest.mark.parametrize("scopes", ["5", '{"read": true}', "null"])
def test_json_scopes_that_are_not_a_list_are_refused(scopes):
    with pytest.raises(ConfigError, match=r"TIDEWISE_TOKENS\[0\]\.scopes: give a list"):
        parse_tokens(f'[{{"name": "ops", "token": "{"k" * 16}", "scopes": {scopes}}}]')
