"""Benchmarks of hotfolder-feeder against a curl script, run with `python bench/run.py`."""
