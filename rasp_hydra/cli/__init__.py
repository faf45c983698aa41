"""The Hydra wing: the only code that imports hydra or omegaconf.

`train` is `python -m rasp_hydra`; `store` registers the config schema; `claim` takes a run
directory before Hydra writes into it; `hydra_job` runs one job under Hydra; `search`
parses a search space; `errors` turns a user's error into one paragraph and an exit code.
"""
