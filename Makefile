# segakit: `make demo` installs and runs the main job on the embedded default model; `make test` installs and runs the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export NO_MKDOCS_2_WARNING := 1

.PHONY: install browser demo test lint docs test-slow bench clean train-embedded train-continue directions editing serve

install: $(VENV)/.installed

# torch==2.13.0 first: a CPU build of exactly that version is found locally; any other torch pulls CUDA.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

demo: install
	$(BIN)/segakit demo --out out/demo --overwrite

# The browser test drives Debian's chromium through its chromedriver (nothing is downloaded at run time).
# Installed here when missing and running as root (CI); elsewhere install them yourself or the test skips.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else echo "note: chromium and chromium-driver are not installed (apt-get install chromium chromium-driver); the browser test will skip"; fi

serve: install
	$(BIN)/segakit serve

test: install browser lint docs
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

# ruff (configured in pyproject.toml): lint, and the formatter in check mode (it changes nothing)
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The docs site (mkdocs.yml) into site/: --strict turns a broken link, a missing page or a docstring the API
# reference cannot render into a failure (not with --quiet: it hides the warnings --strict counts, which let pages
# missing from the nav and a broken anchor through). It builds offline (no fonts or plugins fetched).
docs: install
	$(BIN)/mkdocs build --strict

test-slow: install
	$(BIN)/python -m pytest -q -m slow

bench: install
	$(BIN)/python benchmarks/sega_speed.py
	$(BIN)/python benchmarks/embedded_speed.py

# Retrain the embedded model (tokenizer -> autoencoder -> clip -> cache -> decoder -> unet -> assemble), resuming what is done.
# Runs live in $(SEGAKIT_RUNS) (default runs/embedded, git-ignored); TRAIN_THREADS=1 leaves a core free on 2-core machines.
TRAIN_THREADS ?= 1
TRAIN_DEVICE  ?= cpu
train-embedded: install
	$(BIN)/python -m segakit.train --device $(TRAIN_DEVICE) --threads $(TRAIN_THREADS) $(TRAIN_ARGS)

# Continue training the shipped model where it stopped (a runs folder does not outlive its machine):
# seed $(SEGAKIT_RUNS) with the shipped tokenizer, text encoder, CLIP and autoencoder, cache fresh world
# samples (CONTINUE_START on), train the U-Net from the shipped weights, re-assemble.
CONTINUE_START ?= 100000
train-continue: install
	$(BIN)/python -m segakit.train.shipped
	$(BIN)/python -m segakit.train --device $(TRAIN_DEVICE) --threads $(TRAIN_THREADS) --stages cache,unet,assemble \
		--cache.start $(CONTINUE_START) --unet.init embedded $(TRAIN_ARGS)

# Relearn the embedded model's direction library (what ships: presentation, skin, anti-horror) when the model
# changes, calibrate fair skin (which directions to add per drawn tone, and how often to draw each), then rerun the directions study at the issue's full size (200 seeds per prompt) into docs/results/directions
# (report.md, report.json, figures; it names the weights it was measured on). Both resume: finished directions, cached
# latents and the study's cached images (runs/directions-study, keyed by the weights) are kept.
DIRECTIONS_STUDY_ARGS ?=
directions: install
	$(BIN)/python -m segakit.train.directions --only presentation,skin,horror --cache runs/directions-cache
	$(BIN)/python -m segakit.train.calibrate_directions --attribute skin
	$(BIN)/segakit eval directions --out docs/results/directions --cache runs/directions-study $(DIRECTIONS_STUDY_ARGS)

# The editing study (segakit eval editing) into docs/results/editing/study: report.md, report.json (it names the
# weights it was measured on), figures and the MagicBrush-format pairs. The edits are cached in runs/editing-study,
# keyed by the model's, oracle's and caption writer's weights: after the embedded model changes, this reruns every
# edit; otherwise it only rewrites the report. EDITING_ARGS adds options (e.g. --caption-writer PATH).
EDITING_ARGS ?=
editing: install
	$(BIN)/segakit eval editing --pairs 24 --sessions 4 --steps 25 --threads $(TRAIN_THREADS) \
		--out docs/results/editing/study --cache runs/editing-study $(EDITING_ARGS)

clean:
	rm -rf $(VENV) out site .pytest_cache
