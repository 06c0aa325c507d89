"""python -m pyvm2."""

from pyvm2.cli import main

main()
