"""A segakit server for tests: the embedded model, started in this process on a free local port, stopped after."""

import contextlib
import socket
import threading
import time

import requests

from segakit.serve.config import ServeConfig
from segakit.serve.service import Service


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(config: ServeConfig, service: Service | None = None):
    """Yield (base url, service) of a real uvicorn server on 127.0.0.1; shut it down on exit."""
    import uvicorn

    from segakit.serve.server import create_app

    service = service or Service.load(config)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(service), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {config.token}"} if config.token else {}
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(f"{url}/api/health", headers=headers, timeout=2).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.1)
    try:
        yield url, service
    finally:
        server.should_exit = True
        thread.join(15)
        service.close()
