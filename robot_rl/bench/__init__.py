"""Benchmarks behind ``robot-rl bench …``: each measures one part of the system side by side
with a peer in the same run and returns a JSON-ready dict (see ``benchmarks/README.md``)."""
