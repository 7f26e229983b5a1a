"""The command line: options declared once, parsed by click, and what each command does."""
