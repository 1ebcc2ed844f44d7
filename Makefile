# bsm_nb: `make demo` and `make test` are the two commands; both start with `make install`.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install nginx nginx-1.18 chromium demo docs outputs test check-clean check-tree lint nbtest pytest container-test lock bench clean

install: $(VENV)/.installed nginx nginx-1.18 chromium

# torch==2.13.0 is a CPU build that this machine's pip takes from local disk; elsewhere any torch in settings.ini's range will do.
$(VENV)/.installed: setup.py settings.ini
	test -x $(PY) || python3 -m venv $(VENV)
	$(BIN)/pip install -q -U pip setuptools wheel
	$(BIN)/pip install -q 'torch==2.13.0' || $(BIN)/pip install -q 'torch>=2.10,<3'
	$(BIN)/pip install -q -e '.[dev,launch]'
	touch $@

# nginx fronts the model server; Debian's package, installed when missing (needs root, as in the container and CI).
nginx:
	@command -v nginx >/dev/null 2>&1 || test -x /usr/sbin/nginx || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx >/dev/null; \
	  else echo "warning: nginx is missing and this is not root: serving tests will be skipped (apt-get install nginx)"; fi; }

# Headless Chromium reads the HTML book in tests/test_book.py: Debian's chromium and chromium-driver, installed when missing (as root).
chromium:
	@{ command -v chromium && command -v chromedriver; } >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; \
	  else echo "warning: chromium is missing and this is not root: the book's browser test will be skipped (apt-get install chromium chromium-driver)"; fi; }

# nginx 1.18 (Ubuntu 22.04's, Debian bullseye's), unpacked under .cache/ for the serving test that runs through it; nothing is installed.
nginx-1.18:
	@bash tests/tools/fetch_nginx_1_18.sh .cache/nginx-1.18 || echo "warning: could not fetch nginx 1.18 from Debian bullseye: its serving test will be skipped"

# Synthetic buyer-seller cases -> SageMaker layout under demo/ -> the exported train program with the packaged MiniLM on CPU.
demo: install
	rm -rf demo
	$(PY) -m bsm_nb.synthetic demo --n-train 2000 --n-val 400 --n-test 400 --max-epochs 2
	time SAGEMAKER_BASE_DIR=$(CURDIR)/demo $(BIN)/bsm-train
	@echo; echo "test metrics:"; $(PY) -c "import json; m = json.load(open('demo/model/metrics.json')); print(json.dumps(m['test'], indent=1)); print('threshold', m['threshold'])"
	@echo; echo "the parts (test AUROC) and their weights in the answers, chosen on val by cross-fitting:"; $(PY) -c "import json; m = json.load(open('demo/model/metrics.json')); e = m['ensemble']; print({p: round(s['test']['auroc'], 4) for p, s in m['parts'].items()}); print(e['choice'], e['ensemble_weights']); [print(f'  {p}: {c[\"why\"]}') for p, c in e['candidates'].items()]"
	@echo; echo "calibration (temperature fitted on val; expected calibration error and Brier score before -> after):"; $(PY) -c "import json; c = json.load(open('demo/model/metrics.json'))['calibration']; print('temperature', c['temperature']); [print(f'{k:5} ECE {v[\"ece_before\"]:.4f} -> {v[\"ece_after\"]:.4f}   Brier {v[\"brier_before\"]:.4f} -> {v[\"brier_after\"]:.4f}') for k, v in c.items() if k != 'temperature']"
	@echo "model dir:   $(CURDIR)/demo/model"
	@echo "predictions: $(CURDIR)/demo/model/predictions.csv"
	@echo "plots:       $(CURDIR)/demo/model/roc_curve.png $(CURDIR)/demo/model/pr_curve.png $(CURDIR)/demo/model/calibration_curve.png"

# The book without Quarto: every chapter executed on its tiny data and rendered to static HTML in _docs/ (open _docs/index.html).
docs: install
	$(PY) tests/tools/build_book.py --out _docs

# The outputs the book shows, stored in the chapters: every visible, non-exported cell's fresh outputs (then nbdev_clean).
# `make docs` fails when a stored output no longer matches what its cell gives. ONLY=04_model,07_ensemble for some chapters.
outputs: install
	$(PY) tests/tools/build_book.py --out _docs --store $(if $(ONLY),--only $(ONLY))
	$(BIN)/nbdev_clean

# Notebooks clean and library in sync with them: both commands must leave no change.
check-clean: install
	$(BIN)/nbdev_clean
	@test -z "$$(git status --porcelain -- nbs)" || { git status --porcelain -- nbs; echo "nbdev_clean changed notebooks: run it and commit"; exit 1; }
	$(BIN)/nbdev_export
	@test -z "$$(git status --porcelain -- bsm_nb)" || { git status --porcelain -- bsm_nb; echo "nbdev_export changed bsm_nb/: export and commit"; exit 1; }

# pyflakes' rules (ruff's F): unused imports and locals, undefined names, shadowed definitions (settings: pyproject.toml);
# and the chapters' exported cells small: median at most 12 lines, none over 45 (tests/tools/cell_stats.py).
lint: install
	$(BIN)/ruff check bsm_nb tests bench
	$(PY) tests/tools/cell_stats.py --check

nbtest: install
	$(BIN)/nbdev_test --n_workers 2

pytest: install
	$(BIN)/pytest tests/

# Last: nothing the steps above ran left files outside the project's folders (tests/tools/check_tree.py).
check-tree:
	$(PY) tests/tools/check_tree.py

test: check-clean lint nbtest docs pytest check-tree

# bench/RESULTS.md rebuilt from the committed results under bench/results/ (seconds; no benchmark is rerun:
# bench/README.md lists each benchmark, its command and its run time).
bench: install
	$(PY) bench/make_table.py

# The image, built from docker/Dockerfile with podman and run as SageMaker runs it (train, stop and resume, serve).
# As root; installs podman, runc and debootstrap from Debian's packages when missing. Settings: tests/container/build.sh.
CONTAINER_IMAGE ?= localhost/bsm-nb:rehearsal
container-test: install
	time BSM_IMAGE=$(CONTAINER_IMAGE) bash tests/container/build.sh
	BSM_CONTAINER_IMAGE=$(CONTAINER_IMAGE) $(BIN)/pytest -v tests/test_container.py

# docker/requirements.lock, the image's packages pinned and hashed: settings.ini's requirements and docker/requirements.in,
# resolved by uv (in a venv of its own under .cache/) from PyPI for linux x86_64 and CPython 3.11. Run after editing either.
LOCK_VENV := .cache/lock-venv
lock:
	test -x $(LOCK_VENV)/bin/uv || { python3 -m venv $(LOCK_VENV) && $(LOCK_VENV)/bin/pip install -q uv; }
	python3 docker/lock.py generate --uv $(LOCK_VENV)/bin/uv

clean:
	rm -rf demo _docs .pytest_cache
