.PHONY: setup demo test bench golden lint

setup:
	bash scripts/setup.sh

demo:
	bash scripts/demo.sh

test:
	bash scripts/test.sh

lint: setup
	.venv/bin/ruff check compiler loader artifact tests bench src
	.venv/bin/ruff format --check compiler loader artifact tests bench src
	.venv/bin/mypy

golden: setup
	FWC_UPDATE_GOLDEN=1 .venv/bin/python -m pytest -q tests -k golden

bench: setup
	for b in bench/*.py; do .venv/bin/python "$$b" || exit 1; done
