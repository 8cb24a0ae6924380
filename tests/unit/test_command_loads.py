"""The model commands load what ``model-updates`` names as a worker does: allowed sources, bounded time."""

from __future__ import annotations

import socket

import pytest

from schemas.lifecycle import ModelRef
from scoring.errors import BundleError
from streams.services.control.commands import bounded_load
from streams.settings import Settings


def test_a_url_that_never_answers_is_given_up_after_the_fetch_timeout(tmp_path):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)  # accepts (the kernel does), never answers
    url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
    settings = Settings(data_dir=tmp_path, model_sources=url, model_fetch_timeout_s=1)
    with pytest.raises(BundleError, match="took over 1 s"):
        bounded_load(settings)(ModelRef(name="loans", version="3", uri=url + "loans-3"))
    silent.close()


def test_a_url_outside_the_sources_is_refused_without_a_connection(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.settimeout(0.5)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/loans-3"
    with pytest.raises(BundleError, match="not in the model registry"):
        bounded_load(Settings(data_dir=tmp_path))(ModelRef(name="loans", version="3", uri=url))
    with pytest.raises(TimeoutError):
        listener.accept()  # nobody connected
    listener.close()


def test_an_update_naming_a_bundle_outside_the_sources_is_refused_whatever_serves(tmp_path):
    """The worker reuses a serving version without loading it: the source is checked all the same."""
    from schemas.lifecycle import ModelUpdate
    from scoring.errors import GateRefused
    from scoring.lifecycle.sources import ModelSources
    from streams.services.control.step import refuse_outside

    sources = ModelSources([str(tmp_path / "registry")])
    inside = ModelRef(name="loans", version="2", uri=str(tmp_path / "registry" / "loans" / "2"))
    refuse_outside(ModelUpdate(action="deploy", champion=inside, requested_at=1), sources)
    elsewhere = inside.model_copy(update={"uri": "/tmp/x"})
    outside = ModelUpdate(action="deploy", champion=elsewhere, requested_at=1)
    with pytest.raises(GateRefused) as refused:
        refuse_outside(outside, sources)
    assert refused.value.check == "source" and "not in the model registry" in refused.value.reason
