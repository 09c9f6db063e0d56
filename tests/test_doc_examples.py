"""Every shell and Python example of README.md and docs/*.md runs as written, against a
real site (and the Globus emulator where a page starts one), or is marked not runnable
with its reason. tests/docexamples.py says how a page marks its examples.

A page's `<!-- doc-test: ... -->` comment names what its examples start from:
- `repo`: the shell starts in the repository (the README's `scripts/demo`);
- `my-site`: the site of docs/getting-started.md, made, synced and started as that page
  makes it (MY_SITE below), with $BALSAM_SITE_PATH pointing at it;
- `postgres`: the page's examples need a PostgreSQL server: this run's test server, whose
  URL replaces the placeholder URL (skipped with BALSAM_TEST_POSTGRES=skip).
Without one, a page starts in an empty home folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.docexamples import Page, Sandbox, read_page

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SETUPS = ("repo", "my-site", "postgres")
PLACEHOLDER_URL = "postgresql://balsam@db.example.org:5432/balsam"
MY_SITE = """\
balsam site init ~/my-site --name my-site
export BALSAM_SITE_PATH=~/my-site
balsam app sync
balsam site start
"""


def _pages(postgres: bool) -> list[Path]:
    return [p for p in PAGES if ("postgres" in read_page(p).setups) == postgres]


def test_every_example_is_run_or_marked_and_every_link_leads_somewhere():
    errors = []
    for path in PAGES:
        page = read_page(path)
        errors += page.errors
        errors += [f"{path.name}: unknown doc-test setup {s!r}" for s in page.setups
                   if s not in SETUPS]
        for link in page.links:
            target, _, anchor = link.partition("#")
            if "://" in target:
                continue
            file = path.parent / target if target else path
            if not file.exists() or (anchor and file.suffix == ".md" and
                                     anchor not in read_page(file).anchors):
                errors.append(f"{path.name}: the link {link!r} leads nowhere")
    assert not errors, "\n".join(errors)
    assert len(PAGES) >= 12, "README.md and the 11 pages of the user guide"


@pytest.mark.parametrize("path", _pages(postgres=False), ids=lambda p: p.name)
def test_the_examples_of_a_page_run_as_written(path, tmp_path):
    run_page(read_page(path), tmp_path)


@pytest.mark.parametrize("path", _pages(postgres=True), ids=lambda p: p.name)
def test_the_postgresql_examples_run_as_written(path, tmp_path, postgres_server):
    name = f"docs_{os.getpid()}_{path.stem.replace('-', '_')}"
    url = postgres_server.create_database(name)
    try:
        run_page(read_page(path), tmp_path, replace={PLACEHOLDER_URL: url},
                 path_extra=[str(postgres_server.bindir)],
                 env={"PGPASSWORD": postgres_server.password})
    finally:
        postgres_server.drop_database(name)


def run_page(page: Page, tmp_path: Path, **options) -> None:
    sandbox = Sandbox(tmp_path / "sandbox", cwd=ROOT if "repo" in page.setups else None,
                      **options)
    try:
        if "my-site" in page.setups:
            status, out, err = sandbox.shell(MY_SITE, strict=True)
            assert status == 0, f"setting up the site of {page.path.name}:\n{out}{err}"
        for block in page.blocks:
            if block.runnable:
                sandbox.run(block)
    finally:
        sandbox.close()
    assert sandbox.ran == sum(block.runnable for block in page.blocks)


CARELESS = """\
    indented code

```
no language
```

```bash
an unknown language
```

```output
output of nothing
```

<!-- not-runnable: -->
```sh
true
```

<!-- not-runnable: marks a paragraph -->
Not a fence.

<!-- not-runnable: a yaml block is never run -->
```yaml
a: 1
```

```console
no command here
```
"""


def test_a_careless_page_is_refused_with_the_line_of_each_mistake(tmp_path):
    page = tmp_path / "careless.md"
    page.write_text(CARELESS)
    errors = read_page(page).errors
    for line, what in [(1, "indented code block"), (3, "language ''"), (7, "'bash'"),
                       (11, "output block must follow"), (15, "needs a reason"),
                       (21, "none follows"), (24, "drop not-runnable"),
                       (28, "without a `$ ` command")]:
        assert any(e.startswith(f"careless.md:{line}: ") and what in e for e in errors), \
            (line, what, errors)


@pytest.mark.parametrize("text, message", [
    ("```sh\nfalse\n```\n", "exited 1"),
    ("```console\n$ echo hello\nhullo\n```\n", "printed other than the page shows"),
    ("```console\n$ exit 3\n```\n", "exited 3"),
    ("```python\nprint(1)\n```\n\n```output\n2\n```\n", "printed other"),
    ("```python file=../../outside.py\nx = 1\n```\n", "outside the sandbox"),
])
def test_an_example_that_fails_or_drifts_fails_the_test(tmp_path, text, message):
    page = tmp_path / "drift.md"
    page.write_text(text)
    with pytest.raises(AssertionError, match=message):
        run_page(read_page(page), tmp_path)
    assert not (tmp_path.parent / "outside.py").exists()
