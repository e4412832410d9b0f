"""Chemical master equation solvers."""
