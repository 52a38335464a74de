"""segakit.jobs: a generation job as data (every parameter, stored in each PNG it writes) and the batch runner.

``generate`` (:class:`GenerationParams`, ``run``): one job. The batch runner (``segakit batch``): ``jobfile``
(JOBS lines to jobs and ids), ``batching`` (the plan of pipeline calls), ``worker`` (runs a batch or a call),
``local`` and ``ray_actors`` (where workers run), ``results`` (results.jsonl), ``runner`` (resume, write,
progress); ``calls`` (in-memory work: the studies' chunks and the direction learner's shards, arrays back).
"""
