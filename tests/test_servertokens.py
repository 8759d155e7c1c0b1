"""Server tokens derived from the container id under the instance secret (tmpnb/servertokens.py)."""

from __future__ import annotations

import os
import stat

import pytest

from tmpnb.servertokens import InsecureSecretFile, ServerTokens, load_or_create_secret, secret_path


def test_the_secret_file_is_made_once_0600_and_read_back(tmp_path):
    path = secret_path(str(tmp_path), "inst")
    assert path == str(tmp_path / "inst.secret")
    first = load_or_create_secret(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(first) >= 32
    assert load_or_create_secret(path) == first  # a restart reads the same secret


def test_the_secret_file_is_0600_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        load_or_create_secret(str(tmp_path / "s"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "s").st_mode) == 0o600


def test_tokens_are_stable_across_restarts_and_differ_between_ids_and_secrets(tmp_path):
    path = str(tmp_path / "inst.secret")
    before = ServerTokens.from_file(path)
    after = ServerTokens.from_file(path)  # the next process
    assert before.token_for("abc123") == after.token_for("abc123")
    assert before.token_for("abc123") != before.token_for("abc124")
    assert ServerTokens.ephemeral().token_for("abc123") != before.token_for("abc123")
    token = before.token_for("abc123")
    assert len(token) == 48 and int(token, 16) >= 0


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o666])
def test_a_secret_others_can_read_or_write_is_refused(tmp_path, mode):
    path = tmp_path / "inst.secret"
    path.write_text("x" * 64)
    os.chmod(path, mode)
    with pytest.raises(InsecureSecretFile, match="chmod 600"):
        load_or_create_secret(str(path))


def test_a_short_secret_or_a_symlink_is_refused(tmp_path):
    short = tmp_path / "short"
    short.write_text("abc")
    os.chmod(short, 0o600)
    with pytest.raises(InsecureSecretFile):
        load_or_create_secret(str(short))
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OSError):  # O_NOFOLLOW: never follows a planted link
        load_or_create_secret(str(link))
    assert not (tmp_path / "elsewhere").exists()


def test_a_secret_of_another_owner_is_refused(tmp_path):
    path = tmp_path / "inst.secret"
    path.write_text("y" * 64)
    os.chmod(path, 0o600)
    os.chown(path, 4321, 4321)
    with pytest.raises(InsecureSecretFile, match="uid 4321"):
        load_or_create_secret(str(path))
