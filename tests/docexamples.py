"""The examples of README.md and docs/*.md, found as CommonMark finds them, and a sandbox
that runs them as a reader would: in a shell or a Python process, with its own $HOME.

A fence's language says what it is:
- `sh`: shell lines, run by bash with `set -eo pipefail`; they must succeed.
- `console`: `$ command` lines, each followed by the output it must print (compared as
  doctest does, with ELLIPSIS and NORMALIZE_WHITESPACE); a command shown without output
  must succeed.
- `python`: a script, run by the venv's python in the shell's directory and environment.
- `sh`/`python`/`yaml` with `file=PATH`: the contents of a file; the reader writes it,
  and so does the test.
- `output`: what the example just before it prints (stdout), checked as for `console`.
- `yaml` (without `file=`) and `text`: shown, never run.
`/home/me` stands for the reader's home directory in every block. A fence right after
`<!-- not-runnable: REASON -->` is not run; REASON says why. `<!-- doc-test: SETUP -->`
names what a page's examples start from (see tests/test_doc_examples.py).
"""

from __future__ import annotations

import dataclasses
import doctest
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import psutil
from markdown_it import MarkdownIt

RUN = ("sh", "console", "python")
SHOWN = ("yaml", "text", "output")
HOME_IN_DOCS = "/home/me"
MARKER = "BALSAM_DOC_EXAMPLES"  # in the environment of everything an example starts
TIMEOUT = 120  # seconds one block may take (a wait loop that never ends fails here)
_NOT_RUNNABLE = re.compile(r"<!--\s*not-runnable:(.*?)-->", re.S)
_DIRECTIVE = re.compile(r"<!--\s*doc-test:(.*?)-->", re.S)


@dataclasses.dataclass
class Block:
    page: Path
    line: int
    lang: str
    file: str | None
    text: str
    not_runnable: str | None = None
    output: Block | None = None  # the `output` fence that follows it

    @property
    def where(self) -> str:
        return f"{self.page.name}:{self.line}"

    @property
    def runnable(self) -> bool:
        return self.not_runnable is None and (self.lang in RUN or self.file is not None)


@dataclasses.dataclass
class Page:
    path: Path
    setups: list[str]
    blocks: list[Block]
    errors: list[str]
    links: list[str]
    anchors: set[str] = dataclasses.field(default_factory=set)


def read_page(path: Path) -> Page:
    page = Page(path, [], [], [], [])
    marker: str | None = None
    previous = None
    heading = False
    for token in MarkdownIt("commonmark").parse(path.read_text()):
        line = token.map[0] + 1 if token.map else 0
        if heading and token.type == "inline":  # GitHub's anchor for the heading
            page.anchors.add(re.sub(r"[^\w\- ]", "", token.content.lower()).replace(" ", "-"))
        heading = token.type == "heading_open"
        if token.type == "inline":
            page.links += [child.attrs["href"] for child in token.children or []
                           if child.type == "link_open"]
        if token.type == "html_block":
            for found in _DIRECTIVE.findall(token.content):
                page.setups += found.split()
            found = _NOT_RUNNABLE.search(token.content)
            if found:
                marker = found.group(1).strip()
                if not marker:
                    page.errors.append(f"{path.name}:{line}: not-runnable needs a reason")
            previous = None
            continue
        if token.type == "code_block":
            page.errors.append(f"{path.name}:{line}: an indented code block; fence it and "
                               "give it a language")
        if marker is not None and token.type != "fence":
            page.errors.append(f"{path.name}:{line}: not-runnable marks the fence right "
                               "after it, and none follows")
        if token.type == "fence":
            block = _fence(path, line, token.info, token.content, marker, page.errors)
            if block.lang == "output":
                if previous is None or not previous.runnable or previous.output:
                    page.errors.append(f"{block.where}: an output block must follow a "
                                       "runnable block (use `text` to show an output)")
                else:
                    previous.output = block
            page.blocks.append(block)
            previous = block
        else:
            previous = None
        marker = None
    return page


def _fence(path: Path, line: int, info: str, text: str, marker: str | None,
           errors: list[str]) -> Block:
    lang, *attributes = info.split() or [""]
    options = dict(a.partition("=")[::2] for a in attributes)
    block = Block(path, line, lang, options.pop("file", None), text, marker)
    if lang not in RUN + SHOWN:
        errors.append(f"{block.where}: fence language {lang!r} is none of "
                      f"{', '.join(RUN + SHOWN)}")
    if options or (block.file is not None and lang not in ("sh", "python", "yaml")):
        errors.append(f"{block.where}: unknown fence options {info!r}")
    if lang == "console" and block.file is None and not console_commands(text):
        errors.append(f"{block.where}: a console block without a `$ ` command")
    if marker and lang not in RUN and block.file is None:
        errors.append(f"{block.where}: a `{lang}` block is never run; drop not-runnable")
    return block


def console_commands(text: str) -> list[tuple[str, str]]:
    """(command, output shown) pairs of a console block; `\\` continues a command."""
    pairs: list[tuple[str, list[str]]] = []
    continued = False
    for line in text.splitlines():
        if continued:
            pairs[-1] = (pairs[-1][0] + "\n" + line, [])
        elif line.startswith("$ "):
            pairs.append((line[2:], []))
        elif pairs:
            pairs[-1][1].append(line)
        continued = bool(pairs) and not pairs[-1][1] and line.endswith("\\")
    return [(command, "".join(f"{x}\n" for x in shown)) for command, shown in pairs]


class Sandbox:
    """A reader's machine: a home folder, the venv's `balsam` and `python` first on PATH,
    one shell environment carried from block to block."""

    def __init__(self, root: Path, cwd: Path | None = None,
                 replace: dict[str, str] | None = None, path_extra: list[str] = (),
                 env: dict[str, str] | None = None) -> None:
        self.root = root
        self.home = root / "home"
        self.home.mkdir(parents=True)
        self.cwd = cwd or self.home
        self.replace = {HOME_IN_DOCS: str(self.home), **(replace or {})}
        extra = env
        env = {k: v for k, v in os.environ.items()  # the reader's, not the test run's
               if not k.startswith(("BALSAM_", "GLOBUS_", "PG"))}
        path = [os.path.dirname(sys.executable), *path_extra, env.get("PATH", "")]
        self.env = {**env, **(extra or {}), "HOME": str(self.home),
                    "PATH": os.pathsep.join(path), MARKER: str(root)}
        self.ran = 0

    def text(self, text: str) -> str:
        for placeholder, value in self.replace.items():
            text = text.replace(placeholder, value)
        return text

    def run(self, block: Block) -> None:
        if block.file is not None:
            name = self.text(block.file)
            target = (self.home / name[2:] if name.startswith("~/") else self.cwd / name).resolve()
            if not target.is_relative_to(self.root.resolve()):
                raise AssertionError(f"{block.where}: file={block.file} is outside the sandbox")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(self.text(block.text))
        elif block.lang == "sh":
            self._expect(block, *self.shell(block.text, strict=True))
        elif block.lang == "console":
            for command, shown in console_commands(block.text):
                status, out, err = self.shell(command, strict=False)
                got = out + err
                if shown:
                    self.check(block, command, shown, got)
                elif status != 0:
                    raise AssertionError(f"{block.where}: `{command}` exited {status}:\n{got}")
        elif block.lang == "python":
            script = self.root / f"example_{block.page.stem}_{block.line}.py"
            script.write_text(self.text(block.text))
            self._expect(block, *self.process([sys.executable, str(script)]))
        self.ran += 1

    def _expect(self, block: Block, status: int, out: str, err: str) -> None:
        if status != 0:
            raise AssertionError(f"{block.where}: exited {status}:\n{out}{err}")
        if block.output is not None:
            self.check(block, block.text, block.output.text, out)

    def check(self, block: Block, what: str, shown: str, got: str) -> None:
        want = self.text(shown)
        flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
        checker = doctest.OutputChecker()
        if not checker.check_output(want, got, flags):
            diff = checker.output_difference(doctest.Example(what, want), got, flags)
            first = what.strip().splitlines()[0]
            raise AssertionError(f"{block.where}: `{first}` printed other than the page "
                                 f"shows\n{diff}")

    def shell(self, script: str, strict: bool) -> tuple[int, str, str]:
        """Run bash on `script` in the current directory and environment, then keep the
        directory and environment it ends with."""
        state = self.root / "shell-state"
        wrapped = (f"trap 'env -0 > {state}.env; pwd > {state}.pwd' EXIT\n"
                   f"{'set -eo pipefail' if strict else ''}\n"
                   f"cd {shlex.quote(str(self.cwd))}\n{self.text(script)}\n")
        result = self.process(["bash", "-c", wrapped])
        if (state.with_suffix(".env")).exists():
            pairs = state.with_suffix(".env").read_text().split("\0")
            env = dict(p.partition("=")[::2] for p in pairs if "=" in p)
            self.env = {k: v for k, v in env.items()
                        if k not in ("_", "SHLVL", "PWD", "OLDPWD")}
            self.cwd = Path(state.with_suffix(".pwd").read_text().strip())
            state.with_suffix(".env").unlink()
        return result

    def process(self, command: list[str]) -> tuple[int, str, str]:
        out, err = self.root / "stdout", self.root / "stderr"
        # files, not pipes: a process the example leaves in the background keeps a pipe open
        with out.open("w") as stdout, err.open("w") as stderr:
            status = subprocess.run(command, env=self.env, cwd=self.cwd, stdout=stdout,
                                    stderr=stderr, stdin=subprocess.DEVNULL,
                                    timeout=TIMEOUT).returncode
        return status, out.read_text(), err.read_text()

    def close(self) -> None:
        """Stop every site the examples started, then whatever else they left running."""
        for pid in self.home.glob("**/site*.pid"):
            subprocess.run([sys.executable, "-m", "balsam_mp", "--site", str(pid.parent),
                            "site", "stop", "--timeout", "10"], env=self.env,
                           capture_output=True, timeout=60)
        for proc in psutil.process_iter():
            try:
                if proc.pid != os.getpid() and proc.environ().get(MARKER) == str(self.root):
                    proc.kill()
            except psutil.Error:
                continue
