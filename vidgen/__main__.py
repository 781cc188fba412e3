"""`python -m vidgen` (and `accelerate launch -m vidgen`)."""

from vidgen.cli.app import main

if __name__ == "__main__":
    main()
