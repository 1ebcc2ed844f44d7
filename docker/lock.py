#!/usr/bin/env python3
"""The image's lock file, docker/requirements.lock: every package the image installs, pinned, with sha256 hashes.

    python docker/lock.py generate [--uv UV]      `make lock`: settings.ini's requirements + docker/requirements.in,
                                                  resolved by uv for the image (linux x86_64, CPython 3.11), hashed
    python docker/lock.py check-torch SETTINGS    in the build: a torch the base brings must be in settings.ini's range
    python docker/lock.py for-base-torch LOCK     in the build: the lock without torch and what only torch needs

Standard library only (the build runs it with the base's python3)."""
from __future__ import annotations
import argparse, configparser, re, shlex, subprocess, sys, tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT/'docker'/'requirements.lock'
IMAGE_IN = ROOT/'docker'/'requirements.in'
# Debian bookworm: CPython 3.11, glibc 2.36, x86_64 (SageMaker's x86 instances)
PYTHON_VERSION, PLATFORM = '3.11', 'x86_64-manylinux_2_36'
INDEX = 'https://pypi.org/simple'


def canonical(name:str)->str:
    "A distribution name as PEP 503 compares it."
    return re.sub(r'[-_.]+', '-', name).lower()


def settings_requirements(settings:Path=ROOT/'settings.ini')->list:
    "The `requirements` of settings.ini, one requirement string each."
    c = configparser.ConfigParser(delimiters=['='])
    c.read(settings, encoding='utf-8')
    return shlex.split(c['DEFAULT']['requirements'])


def image_requirements(path:Path=IMAGE_IN)->list:
    "The requirements of docker/requirements.in, comments dropped."
    return [l.split('#')[0].strip() for l in path.read_text().splitlines() if l.split('#')[0].strip()]


def inputs_digest()->str:
    "sha256 of what the lock is made from (the requirements of settings.ini and docker/requirements.in), as recorded."
    import hashlib
    inputs = '\n'.join(settings_requirements() + ['--'] + image_requirements())
    return 'sha256:' + hashlib.sha256(inputs.encode()).hexdigest()


def recorded_digest(text:str)->str|None:
    "The inputs digest a lock's header records."
    m = re.search(r'^# inputs: (sha256:[0-9a-f]{64})$', text, re.M)
    return m[1] if m else None


def parse_lock(text:str)->dict:
    "A hashed requirements file (uv / pip-compile format) -> {name: {'version', 'hashes', 'via'}}."
    pkgs, cur, in_via = {}, None, False
    for line in text.splitlines():
        s = line.strip()
        if not s: continue
        if not line[0].isspace() and not s.startswith('#'): # a requirement: name==version [\]
            m = re.match(r'^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)', s)
            if not m: raise ValueError(f'lock line {s!r}: expected name==version')
            cur = pkgs.setdefault(canonical(m[1]), {'version': m[2], 'hashes': [], 'via': set()})
            cur['hashes'] += re.findall(r'--hash=(sha256:[0-9a-f]{64})', s); in_via = False
        elif cur is not None and s.startswith('--hash='):
            cur['hashes'] += re.findall(r'--hash=(sha256:[0-9a-f]{64})', s)
        elif cur is not None and s.startswith('# via'):
            rest = s[len('# via'):].strip()
            if rest: cur['via'].add(rest)
            in_via = not rest
        elif cur is not None and in_via and s.startswith('#   '):
            cur['via'].add(s[4:].strip())
        else: in_via = False
    return pkgs


def only_for(lock:dict, drop:set)->set:
    "`drop` and every package of `lock` that is there only because of packages in it."
    drop = {canonical(d) for d in drop}
    while True:
        more = {n for n, p in lock.items()
                if n not in drop and p['via'] and all(canonical(v) in drop for v in p['via'])}
        if not more: return drop
        drop |= more


def for_base_torch(text:str)->str:
    "The lock's text without torch and the packages only torch needs (triton, nvidia-*, ...): the base has its own."
    drop = only_for(parse_lock(text), {'torch'})
    out, skipping = [], False
    for line in text.splitlines():
        if line and not line[0].isspace() and not line.startswith('#'):
            skipping = canonical(re.match(r'^[A-Za-z0-9._-]+', line)[0]) in drop
        if not skipping: out.append(line)
    return '\n'.join(out) + '\n'


def check_torch(settings:Path)->str:
    "The installed torch's version; SystemExit naming the range when settings.ini's does not admit it."
    import importlib.metadata as md
    try: from packaging.requirements import Requirement
    except ImportError: from pip._vendor.packaging.requirements import Requirement
    req = next(Requirement(r) for r in settings_requirements(settings) if canonical(Requirement(r).name) == 'torch')
    version = md.version('torch')
    if not req.specifier.contains(version, prereleases=True):
        sys.exit(f'lock.py: the base image has torch {version}, outside bsm_nb\'s range torch{req.specifier} '
                 '(settings.ini); older releases load checkpoints unsafely (weights_only, CVE-2025-32434, '
                 f'CVE-2026-24747). Use a base with torch{req.specifier}, or one without torch (the image then '
                 'installs the locked one).')
    return version


def generate(uv:str='uv', out:Path=LOCK)->Path:
    "Resolve settings.ini's requirements and docker/requirements.in for the image with uv, with hashes, into `out`."
    with tempfile.TemporaryDirectory() as d:
        settings_in = Path(d)/'settings.ini'
        settings_in.write_text('\n'.join(settings_requirements()) + '\n')
        cmd = [uv, 'pip', 'compile', str(settings_in), str(IMAGE_IN.relative_to(ROOT)),
               '--python-version', PYTHON_VERSION, '--python-platform', PLATFORM, '--generate-hashes',
               '--only-binary', ':all:', '--index-url', INDEX, '--no-header', '--quiet']
        text = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout
        text = text.replace(str(settings_in), 'settings.ini')
    header = ('# docker/requirements.lock: every package of the image, pinned and hashed; the Dockerfile installs it\n'
              '# with pip install --require-hashes --no-deps. Made by `make lock` (docker/lock.py generate, uv) from\n'
              f'# settings.ini\'s requirements and docker/requirements.in, for CPython {PYTHON_VERSION} on\n'
              f'# {PLATFORM}, from {INDEX}. Do not edit.\n'
              f'# inputs: {inputs_digest()}\n')
    out.write_text(header + text)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest='command', required=True)
    g = sub.add_parser('generate')
    g.add_argument('--uv', default='uv'); g.add_argument('--out', type=Path, default=LOCK)
    sub.add_parser('check-torch').add_argument('settings', type=Path)
    sub.add_parser('for-base-torch').add_argument('lock', type=Path)
    a = p.parse_args(argv)
    if a.command == 'generate': print(generate(a.uv, a.out))
    elif a.command == 'check-torch': print(f'torch {check_torch(a.settings)} (from the base image)')
    else: sys.stdout.write(for_base_torch(a.lock.read_text()))


if __name__ == '__main__': main()
