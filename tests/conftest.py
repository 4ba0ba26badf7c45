"""Session fixtures of the real services every test folder may use: Prometheus, Alertmanager,
Elasticsearch, and the receivers Alertmanager notifies."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.services import Elasticsearch, Observability, Receivers


@pytest.fixture(scope="session")
def observability(tmp_path_factory) -> Iterator[Observability]:
    services = Observability(tmp_path_factory.mktemp("observability"))
    services.start()
    yield services
    services.stop(wipe=True)


@pytest.fixture(scope="session")
def elasticsearch() -> Iterator[Elasticsearch]:
    node = Elasticsearch()
    node.stop(wipe=True)  # a node left over from an interrupted run
    node.start()
    yield node
    node.stop(wipe=True)


@pytest.fixture(scope="session")
def receivers() -> Iterator[Receivers]:
    sinks = Receivers()
    yield sinks
    sinks.close()
