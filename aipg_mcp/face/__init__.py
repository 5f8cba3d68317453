"""What a person types: the ``aipg-mcp`` command line and the commands behind it.

``cli`` parses arguments and starts the server or a subcommand; ``doctor`` checks a
configuration, ``call`` runs one tool from the terminal and ``demo`` makes one image and one
text against the fake grid. Imports point one way: face → server → grid.
"""
