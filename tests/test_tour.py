"""Every code block of every tour chapter runs, in order, as a reader would run them: from
the repository's root, figures into a temporary folder. Chapters 6, 9, 10, 11 and 12 read the
real data (marked slow, as the other real-data tests); chapter 8 runs in a process of its own under
Numba's CUDA simulator, which must be chosen before Numba is imported."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import minicnn

ROOT = Path(__file__).resolve().parent.parent  # (this file also runs as a script)
TOUR = ROOT / "docs" / "tour"
CHAPTERS = sorted(TOUR.glob("[0-9][0-9]-*.md"))
REAL_DATA = {"06-training-cnns", "09-a-training-loop-by-hand", "10-training-well",
             "11-what-a-cnn-sees", "12-skip-connections"}
SIMULATED_GPU = {"08-the-gpu"}


def code_blocks(chapter: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", chapter.read_text(), re.S | re.M)


def run_chapter(chapter: Path) -> None:
    """Execute the chapter's blocks in one namespace, in order; name the failing block."""
    namespace = {"__name__": f"tour_{chapter.stem.replace('-', '_')}"}
    for number, block in enumerate(code_blocks(chapter), start=1):
        try:
            exec(compile(block, f"{chapter.name}, block {number}", "exec"), namespace)
        except Exception as exc:
            raise AssertionError(f"{chapter.name}, code block {number} failed: "
                                 f"{type(exc).__name__}: {exc}") from exc


def test_the_tour_has_chapters_with_code():
    assert len(CHAPTERS) >= 8
    index = (TOUR / "README.md").read_text()
    for chapter in CHAPTERS:
        assert code_blocks(chapter), chapter.name
        assert chapter.name in index, f"{chapter.name} is not in docs/tour/README.md"


def _chapter_params():
    for chapter in CHAPTERS:
        marks = [pytest.mark.slow] if chapter.stem in REAL_DATA else []
        yield pytest.param(chapter, marks=marks, id=chapter.stem)


@pytest.mark.parametrize("chapter", list(_chapter_params()))
def test_a_chapter_runs_top_to_bottom(chapter, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("MINICNN_TOUR_FIGURES", str(tmp_path))
    if chapter.stem in SIMULATED_GPU:
        env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
        done = subprocess.run([sys.executable, __file__, str(chapter)], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    else:
        before = minicnn.get_backend()
        try:
            run_chapter(chapter)
        finally:
            minicnn.set_backend(before.name)
    for figure in re.findall(r"\]\(figures/([^)]+)\)", chapter.read_text()):
        assert (tmp_path / figure).is_file(), f"{chapter.name} shows {figure} but draws none"
        assert (TOUR / "figures" / figure).is_file(), f"docs/tour/figures/{figure} missing"


if __name__ == "__main__":  # one chapter in this process: python tests/test_tour.py CHAPTER
    sys.path.insert(0, str(ROOT))
    run_chapter(Path(sys.argv[1]))
