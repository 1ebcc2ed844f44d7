"""The repository's top level holds only the folders and files the project is made of, so a store or output a test
leaves behind (an MLflow `mlruns/`, a relative checkpoint dir) is caught, whether git would track it or not.

    .venv/bin/python tests/tools/check_tree.py     # exit 1, naming the strays, when anything else is there

What .gitignore lists (the virtual environment, caches, the rendered book) is allowed: git reports none of it."""
import subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KNOWN = {'.ci', '.gitignore', '.dockerignore', 'Makefile', 'README.md', 'bench', 'bsm_nb', 'docker', 'nbs',
         'pyproject.toml', 'settings.ini', 'setup.py', 'tests'}


def top_level(root:Path=ROOT)->set:
    "The top-level names of every file git tracks or would track (untracked, not ignored) under `root`."
    out = subprocess.run(['git', 'ls-files', '--cached', '--others', '--exclude-standard'], cwd=root,
                         capture_output=True, text=True, check=True).stdout
    return {p.split('/', 1)[0] for p in out.splitlines() if p and (root/p).exists()}


def strays(root:Path=ROOT)->list:
    "Top-level names that are not part of the project."
    return sorted(top_level(root) - KNOWN)


if __name__ == '__main__':
    if bad := strays():
        print(f'check_tree: files outside the project\'s folders: {", ".join(bad)}; a test or tool left them '
              f'(expected only {", ".join(sorted(KNOWN))}, and what .gitignore lists)', file=sys.stderr)
        sys.exit(1)
    print('check_tree: only the project\'s folders at the top level')
