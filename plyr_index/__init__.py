"""The ``plyr-index`` command line: one subcommand per part, dispatched to that part's entry point."""
