"""Providers are stored without their password; the password file is private."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtv.provider_store import ProviderError, ProviderExists, ProviderNotFound, ProviderRecord, ProviderStore

SECRET = "s3cr3t-Passw0rd!"


def _rec(**kw: object) -> ProviderRecord:
    base = dict(id="", name="vcenter", type="vsphere", url="https://vc.example.com/sdk", username="admin")
    return ProviderRecord(**{**base, **kw})  # type: ignore[arg-type]


def test_add_get_and_password_kept_private(tmp_path: Path) -> None:
    store = ProviderStore(tmp_path / "p")
    rec = store.add(_rec(), SECRET)
    assert rec.id
    assert store.get("vcenter") == rec == store.get(rec.id)
    assert store.password(rec) == SECRET
    assert (tmp_path / "p" / "vcenter.password").stat().st_mode & 0o077 == 0
    assert SECRET not in (tmp_path / "p" / "vcenter.json").read_text()
    assert SECRET not in repr(rec)
    store.set_password("vcenter", "rotated")
    assert store.password(rec) == "rotated"


@pytest.mark.parametrize(
    ("kw", "field"),
    [({"name": "Bad_Name"}, "name"), ({"url": "http://vc/sdk"}, "url"), ({"url": "vc.example.com"}, "url"),
     ({"username": ""}, "username"), ({"thumbprint": "AA:BB"}, "thumbprint"),
     ({"thumbprint": ":".join(["AA"] * 32), "insecure_skip_verify": True}, "thumbprint")],
)
def test_bad_input_names_the_field(tmp_path: Path, kw: dict[str, object], field: str) -> None:
    with pytest.raises(ProviderError, match=rf"^{field}"):
        ProviderStore(tmp_path).add(_rec(**kw), SECRET)


def test_duplicate_and_missing(tmp_path: Path) -> None:
    store = ProviderStore(tmp_path)
    store.add(_rec(), SECRET)
    with pytest.raises(ProviderExists, match="already exists"):
        store.add(_rec(), SECRET)
    with pytest.raises(ProviderNotFound, match="not found"):
        store.get("other")
    with pytest.raises(ProviderError, match="password"):
        store.add(_rec(name="other"), "")
