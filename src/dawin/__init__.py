"""DaWin: training-free dynamic weight interpolation (Oh et al., ICLR 2025).

The package holds every algorithm of the workflow; the Snakemake rules only orchestrate.
"""

__version__ = "0.1.0"
