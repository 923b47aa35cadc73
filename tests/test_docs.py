"""The README stays an introduction, and every `porttax` command the README and docs/ show still parses.

Each command line in a shell code block is handed to the CLI's own argument parser, so a renamed
flag, a removed choice or a subcommand that no longer exists fails here instead of in a reader's
shell. The README's examples also run for real, in order (test_readme_examples.py); what the docs'
commands do is tested where each job is (test_cli, test_reports, test_audit, ...).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from porttax.cli import _parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_LIMIT = 12 * 1024


def _shell_blocks(text: str) -> list[str]:
    """The bodies of fenced code blocks that are not Python, JSON or YAML."""
    blocks = re.findall(r"^```([a-z]*)\n(.*?)^```", text, flags=re.M | re.S)
    return [body for lang, body in blocks if lang in ("", "sh", "bash", "console", "shell")]


def _commands(page: Path) -> list[str]:
    found = []
    for body in _shell_blocks(page.read_text()):
        for line in body.replace("\\\n", " ").splitlines():
            for part in line.split("&&"):
                words = shlex.split(part, comments=True)
                if words and Path(words[0]).name == "porttax":
                    found.append(" ".join(shlex.quote(w) for w in words[1:] if w != "..."))
    return found


COMMANDS = [(page.relative_to(ROOT).as_posix(), cmd) for page in PAGES for cmd in _commands(page)]


def test_the_readme_is_an_introduction() -> None:
    size = len((ROOT / "README.md").read_bytes())
    assert size <= README_LIMIT, f"README.md is {size} bytes; move reference material to docs/"


def test_the_pages_show_commands_for_every_job() -> None:
    jobs = {cmd.split()[0] for _, cmd in COMMANDS}
    assert {"convert", "parity", "inspect", "audit", "models", "targets"} <= jobs, jobs


@pytest.mark.parametrize(("page", "command"), COMMANDS, ids=[f"{p}: {c[:60]}" for p, c in COMMANDS])
def test_every_documented_command_parses(page: str, command: str, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        _parser().parse_args(shlex.split(command))
    except SystemExit as exc:  # argparse's way of refusing a command line
        pytest.fail(f"{page}: `porttax {command}` no longer parses (exit {exc.code}): {capsys.readouterr().err}")


def test_relative_links_point_at_files_that_exist() -> None:
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} → {target}")
    assert broken == []
