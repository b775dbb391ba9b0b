"""`python -m fedpilot` is the `fedpilot` command."""

from fedpilot.cli import entry

if __name__ == "__main__":
    entry()
