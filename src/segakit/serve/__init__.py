"""segakit.serve: the web app and the HTTP API (``segakit serve``). Not built yet."""
