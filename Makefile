# mmsam3 developer entry points. `make setup` then `make test` is all CI does.
PY ?= .venv/bin/python

.PHONY: setup test test-slow quickstart lock
setup:
	bash tools/setup_env.sh

# Default suite (CPU, < 25 min on 2 cores): everything not marked slow.
test:
	$(PY) -m pytest -q

# Slow checks: full-size parity, learning check, benchmarks-as-tests.
test-slow:
	$(PY) -m pytest -q -m slow -o addopts="-p no:cacheprovider"

# Move the lock on purpose: resolve the newest allowed versions, build a scratch environment,
# run the default suite there, and rewrite requirements/lock*.txt only if it passes.
lock:
	$(PY) tools/misc/lock_requirements.py
