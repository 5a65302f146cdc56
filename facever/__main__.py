"""`python -m facever ...` (and `torchrun -m facever train ...`) runs the command-line interface."""

from facever.cli import main

if __name__ == "__main__":
    main()
