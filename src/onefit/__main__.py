"""``python -m onefit`` runs the command line (and is what ``torchrun -m onefit`` starts)."""

from onefit.cli import main

if __name__ == "__main__":
    main()
