"""The command line: Typer commands, argument handling, the client of `vidgen serve`."""
