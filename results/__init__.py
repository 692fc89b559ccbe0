"""Results of a search: Parquet tables collected from Tune's files, loaded back as DataFrames.

    python -m results.collect runs/NAME      # writes runs/NAME/report/
    python -m results.show runs/NAME [...]   # prints a summary (several: side by side)
    results.load("runs/NAME")                # the tables, as an Experiment of DataFrames
"""

from results.load import Experiment, load

__all__ = ["Experiment", "load"]
