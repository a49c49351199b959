from moalign.cli import main

if __name__ == "__main__":  # not in a `compare --jobs` worker, which imports this module again
    main()
