"""One module per ``rnnlab`` subcommand (see rnnlab.cli)."""
