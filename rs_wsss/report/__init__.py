"""What users look at: quicklook PNGs and self-contained HTML reports for ``segment`` and ``train``."""
