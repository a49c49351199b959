"""`python cli.py ...` is the same as `moalign ...`."""
from moalign.cli import main

if __name__ == "__main__":
    main()
