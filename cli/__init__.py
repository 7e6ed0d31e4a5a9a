"""The ``rs-wsss`` command line (installed as ``rs_wsss_cli``): each command parses, calls rs_wsss and prints."""
