# make test: set up .venv if missing, install, run the test suite.
# make lint: ruff over the project (rules in ruff.toml).
# make demo: the whole chain on the built-in synthetic corpus.
PY := .venv/bin/python
STAMP := .venv/.installed

.PHONY: test lint demo venv clean bench

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(PY) -m ruff check .

demo: $(STAMP)
	$(PY) -m app.demo

clean:
	rm -rf .venv data/cache
