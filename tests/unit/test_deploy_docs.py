"""docs/deploy.md shows the proxy configurations the integration tests run, verbatim."""

from __future__ import annotations

import re

import pytest

from tests.proxies import EXAMPLES
from tests.server import REPO

GUIDE = REPO / "docs" / "deploy.md"


def fenced_blocks(text: str) -> list[str]:
    return [m.group(1) for m in re.finditer(r"^```[a-z]*\n(.*?)^```$", text, re.S | re.M)]


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.iterdir()))
def test_guide_shows_each_example_verbatim(name):
    assert (EXAMPLES / name).read_text() in fenced_blocks(GUIDE.read_text())


def test_guide_names_the_settings_it_uses():
    from pasteserve.settings import BY_NAME

    guide = GUIDE.read_text()
    for key in re.findall(r"^(\w+) = ", guide, re.M):   # INI lines in the guide
        assert key in BY_NAME or key == "use", key
