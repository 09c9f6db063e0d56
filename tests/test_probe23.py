"""Hostile probes of issue 23 (PostgreSQL operations): each test is a case that broke."""

from __future__ import annotations

import pytest

from balsam_mp.dburl import check_database_url, display_url
from balsam_mp.errors import SettingsError


@pytest.mark.parametrize("value", [
    "host=db password=pa://ss dbname=x",  # a keyword string whose value holds `://`
    "dbname=x sslmode=require password=S3cret application_name=a://b",
])
def test_a_keyword_string_holding_a_scheme_mark_is_refused_with_its_password_masked(value):
    with pytest.raises(SettingsError, match="keyword string") as caught:
        check_database_url(value)
    secret = value.split("password=")[1].split()[0]
    assert secret not in str(caught.value)
    assert secret not in display_url(value)


def test_a_url_with_an_sslpassword_is_refused_and_never_shown():
    """sslpassword (the client key's passphrase) is a secret like password."""
    url = "postgresql://u@h/db?sslmode=verify-full&sslpassword=K3yPass"
    with pytest.raises(SettingsError, match="carries a password") as caught:
        check_database_url(url)
    assert "K3yPass" not in str(caught.value)
    assert "K3yPass" not in display_url(url)
