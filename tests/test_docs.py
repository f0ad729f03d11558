"""The docs stay true to the code: the key reference is what the registries say, and every
page the README and the docs link to exists."""

import re
from pathlib import Path

from vae_cli import config

ROOT = Path(__file__).resolve().parents[1]


def test_the_key_reference_in_the_docs_is_current():
    page = (ROOT / "docs" / "configs.md").read_text(encoding="utf-8")
    shown = re.search(r"<!-- key reference: start -->\n(.*)<!-- key reference: end -->", page, re.S).group(1)
    assert shown == config.key_reference(), "docs/configs.md is out of date: paste the output of `vae keys --markdown`"


def test_every_local_link_of_the_readme_and_the_docs_leads_somewhere():
    for page in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"
