"""tmpnb: temporary Jupyter notebook servers, one Docker container per visitor."""

__version__ = "0.1.0"
