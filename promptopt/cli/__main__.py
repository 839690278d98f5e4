"""`python -m promptopt.cli`: the same command line as `promptopt`."""
from promptopt.cli import main

main()
