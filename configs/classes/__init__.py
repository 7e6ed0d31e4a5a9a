"""Packaged class sets (``rs_wsss_configs.classes``): class names, prompts, colours and descriptions as YAML."""
