"""Starts bqemulator (its own `bqemulator` command, same arguments) with a
time limit on each DuckDB statement.

bqemulator runs every query synchronously on one DuckDB connection inside its
event loop; jobs.cancel does nothing and jobTimeoutMs is ignored. A runaway
query (the conformance suite's timeout tests join a table with itself 7 and 8
times, on purpose) would freeze the emulator for hours and every test after
it. Real BigQuery ends such a job (jobTimeoutMs, its own 6 h limit); here a
timer interrupts the statement after AQUIFER_BQ_STATEMENT_LIMIT_S seconds
(default 5) through DuckDB's own Connection.interrupt(), and the job fails.
Nothing else about the emulator changes.
"""

import os
import sys
import threading

from bqemulator.storage import engine as _engine

_LIMIT_S = float(os.environ.get("AQUIFER_BQ_STATEMENT_LIMIT_S", "5"))
_local = threading.local()


def _limited(method):
    def wrapper(self, *args, **kwargs):
        if getattr(_local, "inside", False):  # fetch_arrow calls execute: one timer for both
            return method(self, *args, **kwargs)
        _local.inside = True
        timer = threading.Timer(_LIMIT_S, self.connection.interrupt)
        timer.daemon = True
        timer.start()
        try:
            return method(self, *args, **kwargs)
        finally:
            timer.cancel()
            _local.inside = False

    return wrapper


_engine.DuckDBEngine.execute = _limited(_engine.DuckDBEngine.execute)
_engine.DuckDBEngine.fetch_arrow = _limited(_engine.DuckDBEngine.fetch_arrow)

if __name__ == "__main__":
    from bqemulator.cli import main

    sys.argv[0] = "bqemulator"
    main()
