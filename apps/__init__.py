"""Applications built on the edgeser SDK (not part of the installed runtime package): see apps/README.md.

    python -m apps.dashboard [--file F | --device N] [--port P]      live emotion dashboard in the browser
    python -m apps.annotate IN_DIR --out OUT_DIR [--jobs N] [--plot]    batch annotation of a folder of recordings
    python apps/mobile/check_pte.py                                     checks the bundled .pte as a mobile app loads it
"""
