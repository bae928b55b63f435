"""Benchmarks: each measures its figures side by side in one run and prints a table (or one
JSON object with `--json`). Their latest results, with the command that produced them, are in
`docs/benchmarks.md`.

One module per benchmark (`smartcity/bench/<name>.py`), each registering a `smartcity bench
<name>` command in `smartcity/cli/bench.py`.
"""
