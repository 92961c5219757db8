"""Benchmark suite: the real service under gunicorn, fed by a generated Frobs source.

Run it from the repository root with ``.venv/bin/python tests/benchmarks/run.py``
(``--help`` for the options).  Modules:

- ``frob_generator``: deterministic frobs and the local Frobs source serving them;
- ``service``: the service (and the bare Flask floor) under gunicorn, the
  scheduler API, worker memory;
- ``figures``: the five measurements;
- ``report``: statistics, machine description, the markdown table, the JSON;
- ``suite``: the command line, the order of the measurements and the time guards;
- ``floor_app``: the bare Flask app the ingest throughput is compared with.
"""
