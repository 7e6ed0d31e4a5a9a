"""The version of rs-wsss: the one place it is written (``pyproject.toml`` reads it, the package root re-exports it).

A leaf module, so that the checkpoint writer, the STAC writer and ``segment`` can import it without importing the
package root (which imports the API)."""

__version__ = "0.1.0"
