"""Benchmark stage: plan and run a sweep (``sweep``) through one worker process per backend
(``worker``) with one timing method (``timing``), statistics (``stats``), the result row model
(``results``), rendering (``report``) and the pytest-benchmark integration (``pytest_bench``)."""
