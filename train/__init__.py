"""Training code for edgeser (datasets, augmentation, recipes). Imports edgeser; edgeser never imports this."""
