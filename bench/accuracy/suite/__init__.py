"""The multi-data-set accuracy suite (protocol: bench/accuracy/suite/datasets.py),
imported as `suite` from bench/accuracy/."""
