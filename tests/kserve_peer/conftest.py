"""The KServe v2 peer (kserve's own ModelServer, in its own cached venv), once per session."""

from __future__ import annotations

import pytest

from tests.kserve_peer.peer import Peer, free_port_pair, start_peer


@pytest.fixture(scope="session")
def kserve_peer(tmp_path_factory: pytest.TempPathFactory) -> Peer:
    """A running peer on free, adjacent 127.0.0.1 ports (HTTP, then gRPC); the first run ever
    builds its venv (~40 s)."""
    log = tmp_path_factory.mktemp("kserve-peer") / "server.log"
    with start_peer(*free_port_pair(), log=log) as peer:
        yield peer
