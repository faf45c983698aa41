"""`python -m rasp_hydra [overrides]`: train one transformer (`-m`: a sweep); the same
command as the console script `rasp-hydra` (`rasp_hydra.cli.entry`)."""

if __name__ == "__main__":
    from rasp_hydra.cli.entry import train

    train()
