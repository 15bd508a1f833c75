"""SecretBox: SECRET_KEY parsing, encryption at rest, rotation and the inbound token's keyed hash."""

from __future__ import annotations

import pytest

from shared.secret_box import SecretBox, SecretKeyError, SecretUnreadable, parse_secret_keys, secret_box_for

OLD_KEY = "old-secret-key-" + "o" * 32
NEW_KEY = "new-secret-key-" + "n" * 32
OTHER_KEY = "unrelated-secret-key-" + "x" * 32


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (NEW_KEY, (NEW_KEY,)),
        (f"{NEW_KEY},{OLD_KEY}", (NEW_KEY, OLD_KEY)),
        (f" {NEW_KEY} , {OLD_KEY} ", (NEW_KEY, OLD_KEY)),
        ("k" * 32, ("k" * 32,)),
    ],
)
def test_secret_key_values_are_split_newest_first(value: str, expected: tuple[str, ...]) -> None:
    assert parse_secret_keys(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "SECRET_KEY is required"),
        ("", "SECRET_KEY is required"),
        ("   ", "SECRET_KEY is required"),
        ("k" * 31, "#1 of 1 is 31 characters long"),
        (f"{NEW_KEY},short", "#2 of 2 is 5 characters long"),
        (f"{NEW_KEY},", "#2 of 2 is 0 characters long"),
    ],
)
def test_a_missing_or_short_key_is_a_clear_error(value: str | None, message: str) -> None:
    with pytest.raises(SecretKeyError, match=message):
        parse_secret_keys(value)


def test_ciphertext_does_not_contain_the_plaintext_and_differs_each_time() -> None:
    box = SecretBox([NEW_KEY])
    first, second = box.encrypt("s2s-secret-value"), box.encrypt("s2s-secret-value")
    assert "s2s-secret-value" not in first
    assert first != second
    assert box.decrypt(first) == box.decrypt(second) == "s2s-secret-value"


def test_rotation_with_two_keys() -> None:
    stored = SecretBox([OLD_KEY]).encrypt("the secret")
    rotating = SecretBox([NEW_KEY, OLD_KEY])

    assert rotating.decrypt(stored) == "the secret"  # old ciphertext still readable
    assert not rotating.is_current(stored)
    rotated = rotating.reencrypt(stored)
    assert rotating.is_current(rotated)
    assert SecretBox([NEW_KEY]).decrypt(rotated) == "the secret"  # the old key may now go
    with pytest.raises(SecretUnreadable):
        SecretBox([OLD_KEY]).decrypt(rotated)


@pytest.mark.parametrize("ciphertext", [SecretBox([OTHER_KEY]).encrypt("x"), "not-a-fernet-token", "é"])
def test_a_wrong_key_or_garbage_is_a_clear_error(ciphertext: str) -> None:
    with pytest.raises(SecretUnreadable, match="cannot be decrypted with any SECRET_KEY value") as raised:
        SecretBox([NEW_KEY, OLD_KEY]).decrypt(ciphertext)
    assert raised.value.code == "SECRET_UNREADABLE"
    assert raised.value.http_status == 500


@pytest.mark.parametrize(
    ("hashed_with", "checked_with", "presented", "matches"),
    [
        ([NEW_KEY], [NEW_KEY], "lbt_token", True),
        ([NEW_KEY], [NEW_KEY], "lbt_token2", False),
        ([NEW_KEY], [NEW_KEY], "", False),
        ([NEW_KEY], [NEW_KEY], None, False),
        ([OLD_KEY], [NEW_KEY, OLD_KEY], "lbt_token", True),  # rotation started, hashes not yet recomputed
        ([NEW_KEY, OLD_KEY], [NEW_KEY], "lbt_token", True),  # recomputed with the newest, old key removed
        ([OLD_KEY], [NEW_KEY], "lbt_token", False),  # old key removed before rotate-secrets ran
        ([OTHER_KEY], [NEW_KEY, OLD_KEY], "lbt_token", False),
    ],
)
def test_token_hash_matches_under_any_configured_key(
    hashed_with: list[str], checked_with: list[str], presented: str | None, matches: bool
) -> None:
    stored_hash = SecretBox(hashed_with).token_hash("lbt_token")
    assert SecretBox(checked_with).token_matches(presented, stored_hash) is matches


def test_token_hash_is_keyed_not_a_plain_digest() -> None:
    import hashlib

    assert SecretBox([NEW_KEY]).token_hash("lbt_token") != hashlib.sha256(b"lbt_token").hexdigest()
    assert SecretBox([NEW_KEY]).token_hash("lbt_token") != SecretBox([OLD_KEY]).token_hash("lbt_token")


def test_a_missing_stored_hash_never_matches() -> None:
    assert SecretBox([NEW_KEY]).token_matches("lbt_token", None) is False


def test_the_box_of_a_setting_is_built_once() -> None:
    assert secret_box_for(NEW_KEY) is secret_box_for(NEW_KEY)
    assert secret_box_for(f"{NEW_KEY},{OLD_KEY}").key_count == 2
