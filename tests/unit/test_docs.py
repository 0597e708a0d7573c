"""docs/cli.md and docs/config.md are generated; these tests fail when they are out of date."""

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name, doc", [("config_docs", "config.md"), ("cli_docs", "cli.md")])
def test_generated_docs_are_current(name, doc):
    committed = (ROOT / "docs" / doc).read_text(encoding="utf-8")
    assert committed == _script(name).render(), (
        f"docs/{doc} is out of date: run `python scripts/{name}.py` (or `make docs`) to update")


def test_every_config_key_has_a_description():
    missing = _script("config_docs").undocumented()
    assert not missing, ("config keys without a description; add a trailing `# ...` comment "
                         "to each field in seq2seq/config.py, then run `python "
                         "scripts/config_docs.py` to update: " + ", ".join(missing))


def test_config_docs_list_every_key():
    from seq2seq.config import Config

    text = (ROOT / "docs" / "config.md").read_text(encoding="utf-8")
    for section, values in Config().to_dict().items():
        for key in values:
            assert f"| `{section}.{key}` |" in text, f"docs/config.md lacks {section}.{key}"


def _user_docs() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_links_between_documents_resolve():
    for doc in _user_docs():
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text(encoding="utf-8")):
            if "://" not in target:
                assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"


def test_docs_name_no_commit_hashes():
    for doc in _user_docs():
        for word in re.findall(r"\b[0-9a-f]{7,40}\b", doc.read_text(encoding="utf-8")):
            assert not (re.search(r"\d", word) and re.search(r"[a-f]", word)), (
                f"{doc.name} names {word!r}, which looks like a commit hash: results name "
                "their command, host and date instead")
