"""Running safely on the drone: preflight checks, the free-disk guard, output and bundle paths."""
