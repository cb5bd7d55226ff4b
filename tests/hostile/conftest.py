from __future__ import annotations

from collections.abc import Iterator

import pytest

from tabship.workflow import TrainedModel

from ..servers import Server, serving


@pytest.fixture(scope="module")
def server(
    insurance_model: TrainedModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    yield from serving(
        insurance_model.artifact.directory,
        tmp_path_factory.mktemp("hostile"),
        "--max-concurrency",
        "256",
        # Strict: an unseen category is one more bad value to refuse with a 422.
        env={"TABSHIP_STRICT_CATEGORIES": "1"},
    )
