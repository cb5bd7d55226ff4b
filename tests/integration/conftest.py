from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tabship.workflow import TrainedModel

from ..servers import Server, start_server


@pytest.fixture(scope="module")
def server(
    insurance_model: TrainedModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    running = start_server(
        insurance_model.artifact.directory, tmp_path_factory.mktemp("server"), "--max-batch", "50"
    )
    yield running
    running.stop(signal.SIGTERM)


@pytest.fixture
def model_dir(insurance_model: TrainedModel) -> Path:
    return insurance_model.artifact.directory
