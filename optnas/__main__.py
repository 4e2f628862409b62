"""``python -m optnas``: the ``optnas`` command, also as ``torchrun ... -m optnas``."""

from optnas.cli import main

if __name__ == "__main__":
    main(prog_name="optnas")
