from moalign.cli import main

main()
