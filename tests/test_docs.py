"""The documentation follows the code: the config-key tables of docs/contract.md are what the
experiments' key specs produce, and the project's docs do not point outside the repository."""
from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _generator():
    spec = importlib.util.spec_from_file_location("make_contract_tables", DOCS / "make_contract_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_contract_tables_match_the_key_specs():
    generator = _generator()
    current = generator.CONTRACT.read_text()
    wanted = generator.render(current)
    if current != wanted:
        stale = [name for name in generator.experiments() if generator.table(name) not in current]
        raise AssertionError(f"docs/contract.md: the config tables of {stale} differ from the key specs; "
                             f"regenerate them with: {generator.COMMAND}")


def test_every_experiment_has_a_table_with_every_key():
    generator = _generator()
    text = generator.CONTRACT.read_text()
    for experiment in generator.experiments():
        block = text.split(generator.begin(experiment), 1)[1].split(generator.end(experiment), 1)[0]
        keys = [row[0] for row in generator.rows(experiment)]
        assert keys, f"{experiment}: no config keys found"
        for key in keys:
            assert f"| `{key}` |" in block, f"{experiment}: key {key!r} missing from its table in docs/contract.md"


#: Pointers to a design page outside the repository, which a user of the project does not have
#: (written in pieces so that this file does not match itself).
OUTSIDE_POINTERS = re.compile("|".join(["DES" + r"IGN(\.md| §)", "shared " + "folder", r"\.\./" + "shared"]))
#: What is scanned: the project's own text (the files git tracks or would track: not a virtual environment
#: or run folder inside the checkout), not the committed runs (their copied sources are history).
SCANNED = {".py", ".md", ".sh", ".sbatch", ".yaml", ".cfg", ".toml", ".txt"}
SKIPPED = {"reproduction"}


def _project_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.splitlines()
    return [ROOT / name for name in sorted(listed)]


def test_the_project_documents_itself():
    """No file points to a design page outside the repository; the facts live in docs/."""
    hits = []
    for path in _project_files():
        parts = set(path.relative_to(ROOT).parts)
        if parts & SKIPPED or path.suffix not in SCANNED or not path.is_file():
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if OUTSIDE_POINTERS.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not hits, "point to docs/ (model.md, contract.md, architecture.md) instead:\n" + "\n".join(hits)


def test_readme_and_docs_link_to_files_that_exist():
    for page in [ROOT / "README.md", *DOCS.glob("*.md")]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), f"{page.relative_to(ROOT)} links to {target}, which does not exist"
