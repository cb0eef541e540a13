"""The ``listen:`` key of the collector's and the results service's configs: one rule, one message."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ctfleet.core.collector_config import CollectorConfig
from ctfleet.core.conventions import COLLECTOR_PORT, RESULTS_SERVICE_PORT
from ctfleet.results.service import ServiceConfig


def _make(model, listen):
    return model(listen=listen) if model is CollectorConfig else model(database="sqlite:///x.db", listen=listen)


@pytest.mark.parametrize("model,port", [(CollectorConfig, COLLECTOR_PORT), (ServiceConfig, RESULTS_SERVICE_PORT)])
def test_listen_is_host_and_port(model, port):
    for ok in ("127.0.0.1:9000", "0.0.0.0:1", "[::1]:65535", "collector.sdr-07.local:9161"):
        assert _make(model, ok).listen == ok
    assert model.model_fields["listen"].default == f"127.0.0.1:{port}"
    for bad in ("localhost", ":9000", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:http"):
        with pytest.raises(ValidationError) as e:
            _make(model, bad)
        errors = e.value.errors()
        assert [err["loc"] for err in errors] == [("listen",)], errors
        assert f"listen must be HOST:PORT, e.g. 127.0.0.1:{port}" in errors[0]["msg"]
