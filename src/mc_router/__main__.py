"""`python -m mc_router`: the same as the `mc-router` console script."""

from mc_router.cli import main

if __name__ == "__main__":
    main()
