"""The README documents every setting."""

from __future__ import annotations

import pathlib

from shared.settings_doc import NESTED, env_vars, service_settings

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def test_readme_lists_every_setting():
    text = README.read_text(encoding="utf-8")
    missing = [var for model in (*NESTED, *service_settings()) for var, _, _ in env_vars(model) if f"`{var}`" not in text]
    assert not missing, f"settings missing from README.md (regenerate with python -m shared.settings_doc): {missing}"
