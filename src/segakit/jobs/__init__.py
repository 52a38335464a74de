"""segakit.jobs: a generation job as data (every parameter, stored in each PNG it writes) and its runner.

``generate`` (:class:`GenerationParams`, ``run``). The batch runner (local workers, Ray) comes here.
"""
