"""Running a suite: cells from a spec, one cell's execution and record, worker processes, the session, executors."""
