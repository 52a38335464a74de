"""``segakit serve``: one process, one model, a Gradio web app and a JSON HTTP API over a bounded job queue.

- :mod:`config`: what a server is started with (model, address, token, limits).
- :mod:`schema`: the API's request and response bodies (field names = the PNG parameters and CLI options) and
  their translation to :class:`segakit.jobs.generate.GenerationParams`.
- :mod:`worker`: the one model in memory, the bounded queue in front of it, cancellation, request logs.
- :mod:`guard`: the token and the request-size cap, in front of the API and the app alike.
- :mod:`api`: the FastAPI routes and their 4xx sentences; :mod:`webapp`: the Gradio app;
  :mod:`editing`: the edit endpoint's place (editing of real images is not wired yet).
- :mod:`server`: both mounted in one FastAPI application, run by uvicorn.
"""
