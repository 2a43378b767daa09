"""The docs hold together: README.md stays short, every link and named repo path in README.md and docs/*.md
resolves, every page and committed result in docs/ is reachable from the README, and docs/settings.md matches the
settings object."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
README_MAX_LINES = 250

# Top-level folders whose paths the docs name; a code span starting with one of them is taken as a repo path.
PATH_ROOTS = (
    "audio",
    "benchmarks",
    "bot",
    "brain",
    "cogs",
    "conversation",
    "corpora",
    "docs",
    "memory",
    "personas",
    "runtime",
    "scripts",
    "simulator",
    "storage",
    "tests",
)
TOP_FILES = re.compile(r"^(pyproject\.toml|pytest\.ini|README\.md|\.env\.example|requirements[\w*-]*\.(txt|lock))$")

FENCE = re.compile(r"^\s*(```|~~~)")
LINK = re.compile(r"(?<!!)\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")
CODE_SPAN = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
MODULE_RUN = re.compile(r"python -m ([A-Za-z_][\w.]*)")
DOTTED = re.compile(r"^([a-z_]+)\.([A-Za-z_]\w*)(\.[A-Za-z_]\w*)*$")


def doc_files(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def split_fences(text: str) -> tuple[list[str], list[str]]:
    """(lines outside fenced code blocks, lines inside them)."""
    prose: list[str] = []
    code: list[str] = []
    inside = False
    for line in text.splitlines():
        if FENCE.match(line):
            inside = not inside
            continue
        (code if inside else prose).append(line)
    return prose, code


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = text.replace("`", "").strip().lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return kept.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    prose, _ = split_fences(path.read_text())
    seen: dict[str, int] = {}
    out: set[str] = set()
    for line in prose:
        m = re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    """Relative links (and images) of a markdown file that name a missing file or a missing heading."""
    prose, _ = split_fences(path.read_text())
    text = "\n".join(CODE_SPAN.sub("", line) for line in prose)
    problems = []
    for target in LINK.findall(text) + IMAGE.findall(text):
        if re.match(r"^[a-z][a-z+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, fragment = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            problems.append(f"{path.relative_to(root)}: link to a missing file: {target}")
            continue
        if not dest.resolve().is_relative_to(root.resolve()):
            problems.append(f"{path.relative_to(root)}: link outside the repository: {target}")
            continue
        if fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            problems.append(f"{path.relative_to(root)}: no heading for #{fragment} in {dest.relative_to(root)}")
    return problems


def _path_exists(span: str, root: Path) -> bool:
    if any(c in span for c in "*?["):
        return any(root.glob(span))
    return (root / span).exists()


def missing_paths(path: Path, root: Path = ROOT) -> list[str]:
    """Repo paths and modules the file names in code (`audio/resample.py`, `python -m benchmarks.soak`,
    `brain.responder.Responder`) that do not exist. Paths under a top folder this checkout lacks are not checked
    (the layers' future names), nor placeholders (`<name>`) and outputs (`out/...`, `data/...`)."""
    text = path.read_text()
    prose, code = split_fences(text)
    roots = {r for r in PATH_ROOTS if (root / r).is_dir()}
    problems = []
    spans = [s.strip() for line in prose for s in CODE_SPAN.findall(line)]
    for span in spans:
        if any(c in span for c in " <>…$=") or span.startswith(("/", "~", "http")):
            continue
        span = span.rstrip(".,;:")
        first = span.split("/", 1)[0]
        if "/" in span and first in roots:
            if not _path_exists(span.rstrip("/"), root):
                problems.append(f"{path.relative_to(root)}: names a missing path: {span}")
        elif "/" not in span and TOP_FILES.match(span):
            if not _path_exists(span, root):
                problems.append(f"{path.relative_to(root)}: names a missing file: {span}")
        else:
            m = DOTTED.match(span)
            if m and m.group(1) in roots and not span.endswith((".py", ".md", ".json", ".toml")):
                package, module = m.group(1), m.group(2)
                if not ((root / package / f"{module}.py").is_file() or (root / package / module).is_dir()):
                    problems.append(f"{path.relative_to(root)}: names a missing module: {span}")
    for module in MODULE_RUN.findall("\n".join(prose + code)):
        parts = module.split(".")
        if parts[0] not in roots or module.endswith("."):  # `python -m benchmarks.<name>`: a placeholder
            continue
        base = root.joinpath(*parts)
        if not (base.with_suffix(".py").is_file() or (base / "__main__.py").is_file()):
            problems.append(f"{path.relative_to(root)}: runs a missing module: python -m {module}")
    return problems


def linked_from(start: Path, root: Path = ROOT) -> set[Path]:
    """Every file reachable by relative links from `start`, following markdown pages."""
    seen: set[Path] = set()
    todo = [start.resolve()]
    while todo:
        page = todo.pop()
        if page in seen:
            continue
        seen.add(page)
        if page.suffix != ".md" or not page.is_file():
            continue
        prose, _ = split_fences(page.read_text())
        text = "\n".join(CODE_SPAN.sub("", line) for line in prose)
        for target in LINK.findall(text) + IMAGE.findall(text):
            file_part = target.partition("#")[0]
            if file_part and not re.match(r"^[a-z][a-z+.-]*:", target):
                todo.append((page.parent / file_part).resolve())
    return seen


# --- the checker itself ------------------------------------------------------------------------------------


def test_slug_follows_github():
    assert slug("Bigger models: presets and `chorus models`") == "bigger-models-presets-and-chorus-models"
    assert slug("End-to-end latency (`e2e_bench`)") == "end-to-end-latency-e2e_bench"
    assert slug("Memory and privacy: what is kept, where") == "memory-and-privacy-what-is-kept-where"


def test_checker_finds_what_is_broken(tmp_path: Path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "audio").mkdir()
    (tmp_path / "audio" / "resample.py").write_text("")
    (tmp_path / "docs" / "a.md").write_text("# Page A\n\n## Some part\n")
    page = tmp_path / "README.md"
    page.write_text(
        "# Top\n\n"
        "[ok](docs/a.md), [ok anchor](docs/a.md#some-part), [self](#top), [web](https://example.com/x)\n"
        "[gone](docs/b.md), [bad anchor](docs/a.md#other-part), [bad self](#nowhere)\n"
        "`audio/resample.py` `audio/missing.py` `out/bench/e2e.json` `STT_MODEL=<name>` `runtime/settings.py`\n"
        "`audio.resample` `audio.gone.Thing` `pyproject.toml`\n"
        "```bash\npython -m audio.resample\npython -m audio.nothing_here\n# a comment, not a heading\n```\n"
    )
    links = broken_links(page, tmp_path)
    assert links == [
        "README.md: link to a missing file: docs/b.md",
        "README.md: no heading for #other-part in docs/a.md",
        "README.md: no heading for #nowhere in README.md",
    ]
    assert missing_paths(page, tmp_path) == [
        "README.md: names a missing path: audio/missing.py",
        "README.md: names a missing module: audio.gone.Thing",
        "README.md: names a missing file: pyproject.toml",
        "README.md: runs a missing module: python -m audio.nothing_here",
    ]
    assert "a-comment-not-a-heading" not in anchors(page)
    assert (tmp_path / "docs" / "a.md").resolve() in linked_from(page, tmp_path)


# --- the repository's docs ---------------------------------------------------------------------------------


def test_readme_is_short():
    lines = README.read_text().count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines (at most {README_MAX_LINES}): move detail to docs/"


def test_readme_keeps_the_test_command():
    """CI (.ci/run) runs the README's test command: it stays `scripts/test.sh`, in a code block."""
    _, code = split_fences(README.read_text())
    assert any(line.split("#")[0].strip() == "scripts/test.sh" for line in code)
    assert any(line.split("#")[0].strip() == "scripts/run.sh" for line in code)


@pytest.mark.parametrize("page", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_links_resolve(page: Path):
    assert broken_links(page) == []


@pytest.mark.parametrize("page", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_named_paths_exist(page: Path):
    assert missing_paths(page) == []


def test_every_page_and_result_is_reachable_from_the_readme():
    reachable = linked_from(README)
    docs = ROOT / "docs"
    published = [p for p in docs.iterdir() if p.suffix in {".md", ".json", ".png", ".txt"}]
    orphans = sorted(str(p.relative_to(ROOT)) for p in published if p.resolve() not in reachable)
    assert orphans == [], "link these from README.md or a page it links"


def test_settings_reference_is_current():
    from scripts.gen_settings_doc import DOC, render

    assert DOC.read_text() == render(), "regenerate with: .venv/bin/python -m scripts.gen_settings_doc"
