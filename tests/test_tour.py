"""Every code block of every tour chapter runs, in order, as a reader would run them: on
the NumPy backend, from the repository's root, figures into a temporary folder."""

import os
import re
from pathlib import Path

import pytest

import minicnn

TOUR = Path(__file__).resolve().parent.parent / "docs" / "tour"
CHAPTERS = sorted(TOUR.glob("[0-9][0-9]-*.md"))


def code_blocks(chapter: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", chapter.read_text(), re.S | re.M)


def test_the_tour_has_chapters_with_code():
    assert len(CHAPTERS) >= 3
    index = (TOUR / "README.md").read_text()
    for chapter in CHAPTERS:
        assert code_blocks(chapter), chapter.name
        assert chapter.name in index, f"{chapter.name} is not in docs/tour/README.md"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_a_chapter_runs_top_to_bottom(chapter, tmp_path, monkeypatch):
    monkeypatch.chdir(TOUR.parent.parent)
    monkeypatch.setenv("MINICNN_TOUR_FIGURES", str(tmp_path))
    before = minicnn.get_backend()
    namespace = {"__name__": f"tour_{chapter.stem}"}
    try:
        for number, block in enumerate(code_blocks(chapter), start=1):
            try:
                exec(compile(block, f"{chapter.name}, block {number}", "exec"), namespace)
            except Exception as exc:
                raise AssertionError(f"{chapter.name}, code block {number} failed: "
                                     f"{type(exc).__name__}: {exc}") from exc
    finally:
        minicnn.set_backend(before.name)
    for figure in re.findall(r"\]\(figures/([^)]+)\)", chapter.read_text()):
        assert (tmp_path / figure).is_file(), f"{chapter.name} shows {figure} but draws none"
        assert (TOUR / "figures" / figure).is_file(), f"docs/tour/figures/{figure} missing"
    assert os.environ["MINICNN_TOUR_FIGURES"] == str(tmp_path)
