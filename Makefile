# Everything runs from a virtualenv in .venv, created and filled on first use.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench install clean up down dashboards

include scripts/infra.mk
include scripts/observability.mk

$(STAMP): setup.py constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24" -c constraints.txt
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test,bench]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/ampel-monitor demo

test: $(STAMP)
	$(BIN)/python -m pytest

# the Grafana dashboards, from dashboards/*.py to dashboards/generated/*.json
dashboards: $(STAMP)
	$(BIN)/python -m dashboards

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_ddsketch.py
	$(BIN)/python benchmarks/bench_drift.py
	$(BIN)/python benchmarks/bench_pipeline.py
	$(BIN)/python benchmarks/bench_kafka.py
	$(BIN)/python benchmarks/bench_sinks.py
	$(BIN)/python benchmarks/bench_flink.py

# the local stack: a Kafka broker on 127.0.0.1:19092, the Prism runner, Prometheus (19090),
# Alertmanager (19094) and Elasticsearch (19200)
up: $(STAMP) kafka-up prism obs-up es-up

down: kafka-down obs-down es-down flink-down

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
