"""Training: tagged tiles → crops (``sampler``, numpy) → tensor batches (``batches``) → the loop (``loop``), with an
optional frozen-feature cache (``cache``); ``run`` joins them for ``rs-wsss train``."""
