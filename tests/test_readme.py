"""README.md's command reference is generated from `--help` by cog and kept up to date:
`cog --check` passes, catches a stale copy, and what it wrote is what the installed
`journeys` command prints."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from conftest import JOURNEYS_BIN, ROOT

README = ROOT / "README.md"


def cog(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cogapp", *args], capture_output=True, text=True, cwd=ROOT)


def help_text(*args: str) -> str:
    """What the installed console script prints for `journeys ARGS --help` on an 80-column terminal."""
    env = {**os.environ, "COLUMNS": "80", "CI": "true"}
    proc = subprocess.run([str(JOURNEYS_BIN), *args, "--help"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def reference_sections(text: str) -> dict[str, str]:
    """The generated part of the README: {'journeys run --help': the fenced text, ...}."""
    body = text.split("\n## Command reference\n", 1)[1]
    return {m.group(1): m.group(2) for m in re.finditer(r"^### `(journeys[^`]*)`\n\n```\n(.*?)```$", body, re.M | re.S)}


def test_readme_is_up_to_date_with_cog():
    """`cog --check README.md` passes: regenerating the command reference changes nothing
    (after changing a command: `.venv/bin/cog -r README.md`)."""
    proc = cog("--check", "--check-fail-msg=run `.venv/bin/cog -r README.md`", str(README))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_stale_reference_is_caught(tmp_path):
    """A README whose reference no longer matches the help (an edited line, a missing
    command) fails `cog --check`."""
    text = README.read_text(encoding="utf-8")
    assert "Usage: journeys run [OPTIONS]" in text
    edited = tmp_path / "edited.md"
    edited.write_text(text.replace("Usage: journeys run [OPTIONS]", "Usage: journeys run [OPTIONS] OLD"), encoding="utf-8")
    missing = tmp_path / "missing.md"
    missing.write_text(re.sub(r"### `journeys sql --help`\n\n```\n.*?```\n", "", text, flags=re.S), encoding="utf-8")
    assert missing.read_text(encoding="utf-8") != text
    for path in (edited, missing):
        proc = cog("--check", str(path))
        assert proc.returncode != 0, path.name
        assert "Check failed" in proc.stdout + proc.stderr


def test_reference_is_what_journeys_prints():
    """Independently of cog: the README has one section per command that `journeys --help`
    lists (and the group's own), each exactly that command's `--help` output, near the end
    of the README (the last section)."""
    text = README.read_text(encoding="utf-8")
    top = help_text()
    commands = re.findall(r"^  (\S+)\s", top.split("\nCommands:\n", 1)[1], re.M)
    assert {"run", "ingest", "build", "export", "sql", "sample", "validate"} <= set(commands)
    sections = reference_sections(text)
    assert list(sections) == ["journeys --help", *(f"journeys {c} --help" for c in commands)]
    assert sections["journeys --help"] == top
    for c in commands:
        assert sections[f"journeys {c} --help"] == help_text(c), c
    headings = re.findall(r"^## (.+)$", text, re.M)
    assert headings[-1] == "Command reference" and "Command line" in headings
