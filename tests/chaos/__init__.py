"""The fault suite (``make chaos``; a reduced form runs in CI from tests/integration/test_faults.py).

- :mod:`tests.chaos.infra`: the broker and the database of ``deploy/local/stack.sh``, restarted
  or killed on demand;
- :mod:`tests.chaos.services`: the four services as real processes, with replicas;
- :mod:`tests.chaos.suite`: scenarios, the upstream producer, the observer, the scoring;
- ``python -m tests.chaos``: runs scenarios against a running stack and prints the table.
"""
