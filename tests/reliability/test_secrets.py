"""A secret scanner over the repository (detect-secrets), with a reviewed baseline.

Every file git would commit (tracked, plus untracked files that are not ignored) is scanned with
detect-secrets' plugins, except ``HexHighEntropyString``: pseudonymous user keys and content
digests are hex by design, and a hex token is still caught when it is assigned to a name that
says secret/password/key (``KeywordDetector``). Findings already reviewed live in
``.secrets.baseline`` (test passwords of throw-away local servers, the names of the environment
variables that hold secrets); any other finding fails the test.

After reviewing a new finding that is not a secret, refresh the baseline with::

    .venv/bin/python -m tests.reliability.test_secrets --update-baseline
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
BASELINE = REPO_ROOT / ".secrets.baseline"
DISABLED_PLUGINS = ("HexHighEntropyString",)
# Generated or vendored files: lock-file integrity hashes and minified code are not ours to vet.
EXCLUDED_FILES = re.compile(r"(^|/)(package-lock\.json|\.secrets\.baseline)$|(^|/)vendor/|\.(png|jpg|gz|zip|pt)$")


def repo_files(root: Path) -> list[str]:
    """What git would commit: tracked files and untracked ones that are not ignored."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return sorted(
        {name for name in listed.split("\0") if name and not EXCLUDED_FILES.search(name) and (root / name).is_file()}
    )


def scan(root: Path, files: Iterable[str]) -> dict[str, set[str]]:
    """detect-secrets findings: file -> hashed secrets (line numbers left out: they move)."""
    from detect_secrets import SecretsCollection
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    from detect_secrets.settings import transient_settings

    classes: list[Any] = list(get_mapping_from_secret_type_to_class().values())
    plugins = [{"name": cls.__name__} for cls in classes if cls.__name__ not in DISABLED_PLUGINS]
    found: dict[str, set[str]] = {}
    collection = SecretsCollection(root=str(root))
    with transient_settings({"plugins_used": plugins}):
        for name in files:
            collection.scan_file(name)
    for filename, secret in collection:
        found.setdefault(filename, set()).add(secret.secret_hash)
    return found


def load_baseline(path: Path = BASELINE) -> dict[str, set[str]]:
    results = json.loads(path.read_text())["results"]
    return {name: {entry["hashed_secret"] for entry in entries} for name, entries in results.items()}


def unexpected_secrets(root: Path, files: Iterable[str], baseline: dict[str, set[str]]) -> dict[str, set[str]]:
    """Findings in ``files`` under ``root`` that the baseline does not list."""
    found = scan(root, files)
    new = {name: hashes - baseline.get(name, set()) for name, hashes in found.items()}
    return {name: hashes for name, hashes in new.items() if hashes}


def test_repository_has_no_secret_outside_the_reviewed_baseline() -> None:
    new = unexpected_secrets(REPO_ROOT, repo_files(REPO_ROOT), load_baseline())
    assert not new, (
        f"possible secrets in {sorted(new)}: remove them (secrets come from the environment), or, if they are "
        "not secrets, refresh .secrets.baseline (see tests/reliability/test_secrets.py)"
    )


def test_a_planted_secret_is_found(tmp_path: Path) -> None:
    """The same scan, baseline and all, fails on a file with a planted secret beside reviewed files.

    The reviewed files are copied with the planted one so the scan runs as over the repository (the
    whole repository is the test above); their baselined findings must stay quiet.
    """
    copy = tmp_path / "repo"
    reviewed = [name for name in load_baseline() if (REPO_ROOT / name).is_file()]
    assert reviewed, "the baseline lists no file of the repository"
    for name in reviewed:
        target = copy / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, target)
    planted = copy / "pricewave" / "cloud.py"
    planted.parent.mkdir(parents=True, exist_ok=True)
    planted.write_text('AWS_ACCESS_KEY_ID = "AKIAZ7QWERTY12345678"\nredis_password = "hunter2-but-longer-9f8e"\n')
    new = unexpected_secrets(copy, [*reviewed, "pricewave/cloud.py"], load_baseline())
    assert list(new) == ["pricewave/cloud.py"]
    assert len(new["pricewave/cloud.py"]) == 2


def write_baseline(root: Path = REPO_ROOT, path: Path = BASELINE) -> None:
    """Write the baseline of what the scan finds now (review every entry first)."""
    from detect_secrets.core.baseline import format_for_output
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    from detect_secrets.core.secrets_collection import SecretsCollection
    from detect_secrets.settings import transient_settings

    classes: list[Any] = list(get_mapping_from_secret_type_to_class().values())
    plugins = [{"name": cls.__name__} for cls in classes if cls.__name__ not in DISABLED_PLUGINS]
    collection = SecretsCollection(root=str(root))
    with transient_settings({"plugins_used": plugins}):
        for name in repo_files(root):
            collection.scan_file(name)
        output = format_for_output(collection)
    path.write_text(json.dumps(output, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    if sys.argv[1:] == ["--update-baseline"]:
        write_baseline()
        print(f"wrote {BASELINE}")
    else:
        print(__doc__)
