"""The reader's pages: generated from the committed results, every link and image resolving, every committed
figure shown somewhere, and the scorecard's table as the results give it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from matplotlib import image

from sobolev.common.paths import ROOT

LINK = re.compile(r"(!?)\[[^\]]*\]\(([^)\s]+)\)")


def markdown_files() -> list[Path]:
    """Every markdown page of the repository (the README, ``docs/``, examples), as git tracks them or will."""
    return sorted({ROOT / "README.md", *ROOT.glob("docs/**/*.md"), *ROOT.glob("examples/**/*.md")})


def links(text: str) -> list[tuple[bool, str]]:
    """``(is_image, target)`` of every markdown link and image of ``text``."""
    return [(bang == "!", target) for bang, target in LINK.findall(text)]


def committed_figures() -> list[Path]:
    """Every figure under ``results/`` and ``docs/figures/`` that git tracks."""
    out = subprocess.run(["git", "ls-files", "results", "docs/figures"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.split()  # fmt: skip
    return sorted(ROOT / f for f in out if f.endswith(".png"))


def test_the_link_check_itself_finds_links_and_images():
    found = links("see [a page](docs/a.md#part) and ![a figure](results/x/figures/f.png), not [x] (y) or http")
    assert found == [(False, "docs/a.md#part"), (True, "results/x/figures/f.png")]


def test_every_relative_link_and_image_resolves():
    broken = []
    for page in markdown_files():
        for _, target in links(page.read_text()):
            if re.match(r"^(https?:|mailto:|#)", target):
                continue
            path = (page.parent / target.split("#")[0]).resolve()
            if not path.exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_every_committed_figure_is_shown_on_some_page_and_opens():
    shown = {(page.parent / target).resolve() for page in markdown_files()
             for is_image, target in links(page.read_text()) if is_image}  # fmt: skip
    figures = committed_figures()
    assert figures, "no committed figures found (is this a git checkout?)"
    assert [f.relative_to(ROOT).as_posix() for f in figures if f.resolve() not in shown] == []
    for f in figures:
        height, width = image.imread(f).shape[:2]  # a real PNG, at a size a reader can read
        assert 300 <= width <= 4000 and 200 <= height <= 4000, f


def test_the_readme_is_a_landing_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 130  # about two screens; everything else is on the pages it links
    assert sum(is_image for is_image, _ in links(readme)) >= 4


def test_pages_are_generated_from_the_committed_results():
    from sobolev.readme import PAGES, render_pages

    pages = render_pages()
    stale = [name for name in PAGES if pages[name] != (ROOT / name).read_text()]
    assert not stale, f"stale pages {stale}: run `python -m sobolev.readme`"


def test_the_scorecard_is_the_committed_results_and_passes_the_figure_check():
    from sobolev import scorecard
    from sobolev.common.plotting import figure_problems
    from sobolev.readme import SCORECARD, SECTIONS, scorecard_table, section_blocks

    table = scorecard_table()
    committed = pd.read_csv(ROOT / f"{SCORECARD}.csv")
    pd.testing.assert_frame_equal(committed, table, check_dtype=False, rtol=1e-5)
    assert set(table.verdict) <= {"win", "loss", "undecided"} and (table.low <= table.high).all()
    counts = scorecard.claim_counts({SECTIONS[s][0]: "\n".join(b.values()) for s, b in section_blocks().items()})
    assert figure_problems(scorecard.figure(table, counts)) == []


@pytest.mark.parametrize("bad", ["<!-- results:nothing -->\n<!-- /results:nothing -->\n"])
def test_a_page_with_a_block_nothing_generates_is_refused(bad):
    from sobolev.readme import render

    with pytest.raises(ValueError, match="nothing generates"):
        render(bad, {}, "page.md")
