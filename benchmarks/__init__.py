"""Benchmarks of this port, one module per measurement, kept out of lib/ and model/.

`python3 -m benchmarks NAME [options]` runs one, `python3 -m benchmarks all [--smoke]` runs them all
in one report, `python3 -m benchmarks --list` names them; utils.py holds the shared helpers.
"""
