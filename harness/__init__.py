"""What the tests and the benchmarks start and drive, shared by both (bench/ imports
it without importing tests/): free ports, a private redis-server, server processes
stopped as an init system would, Debian's browsers, network namespaces, aiortc call
peers, moto's S3 server, and the Debian programs these need. Never imported by the
product (pyproject.toml's packages leave it out)."""
