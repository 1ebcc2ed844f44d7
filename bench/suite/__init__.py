"""The multi-data-set accuracy suite (protocol: bench/suite/datasets.py), imported as `suite` from bench/."""
