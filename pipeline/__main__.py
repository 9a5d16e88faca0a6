"""`python -m pipeline` is the `journeys` command."""

from pipeline.cli import main

if __name__ == "__main__":
    main()
