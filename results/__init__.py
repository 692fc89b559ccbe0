"""Results of a search: Parquet tables collected from Tune's files, loaded back as DataFrames.

    python -m results.collect runs/NAME                # writes runs/NAME/report/
    python -m results.show runs/NAME [...]             # a summary (several: side by side)
    python -m results.show runs/NAME trial=ID          # one trial in full; columns=all: every hyperparameter
    results.load("runs/NAME")                          # the tables, as an Experiment of DataFrames
    results.load("runs/NAME").importance               # hyperparameters by importance (PED-ANOVA)
"""

from results.load import Experiment, load

__all__ = ["Experiment", "load"]
