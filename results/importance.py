"""Which hyperparameters mattered: Optuna's PED-ANOVA over the trials' final ranking.

Computed from the trials table alone (no Ray, no search space, no Optuna journal), so it works on
any collected experiment. The ranking is the one the search's TPE learned from (search.strategy.searcher
tells Optuna the same): completed trials by their last validation accuracy, then pruned trials by
how many epochs they got and their last accuracy there. Failed and unfinished trials are left out.

PED-ANOVA (Watanabe et al., 2023) compares, per hyperparameter, how the top trials' values are
spread against all ranked trials' values (a Pearson divergence of Parzen estimates); Optuna
normalises the scores to sum to 1. Hyperparameters drawn from a range enter by their rank among
the trials, so a log-scale range (lr) and a linear one (dropout) are read alike without knowing
the space; choices (filters, activation, batch_size) as categories.
"""

from __future__ import annotations

import optuna
import pandas as pd
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.importance import PedAnovaImportanceEvaluator

from results.schema import CONFIG_COLUMNS
from results.status import ranked

MIN_TRIALS = 4  # below this, no split into "top" and "the rest" says anything
# PED-ANOVA wants at least this many trials in its top quantile (Optuna's documentation); the
# quantile is kept between the top 10% (large searches) and the top half (small ones).
TOP_TRIALS = 5
COLUMNS = ["parameter", "importance"]


def varying(trials: pd.DataFrame) -> list[str]:
    """Config fields with more than one value across `trials`, in Config field order."""
    return [name for name in CONFIG_COLUMNS if trials[name].nunique(dropna=False) > 1]


def importance(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per varying hyperparameter (parameter, importance), most important first; no rows
    when fewer than MIN_TRIALS trials finished or nothing varied."""
    top = ranked(trials)
    params = varying(top)
    if len(top) < MIN_TRIALS or not params:
        return pd.DataFrame({"parameter": pd.Series(dtype=str), "importance": pd.Series(dtype=float)})
    encoded = {name: _encode(top[name]) for name in params}
    # A study in memory is a means here, not news: Optuna announces every one it creates at INFO.
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(direction="minimize")
    finally:
        optuna.logging.set_verbosity(verbosity)
    for rank in range(len(top)):
        study.add_trial(
            optuna.trial.create_trial(
                value=float(rank),  # 0 is the best trial
                params={name: values[rank] for name, (values, _) in encoded.items()},
                distributions={name: distribution for name, (_, distribution) in encoded.items()},
            )
        )
    quantile = min(0.5, max(0.1, TOP_TRIALS / len(top)))
    scores = optuna.importance.get_param_importances(
        study, evaluator=PedAnovaImportanceEvaluator(target_quantile=quantile), params=params
    )
    rows = sorted(scores.items(), key=lambda item: (-item[1], params.index(item[0])))
    return pd.DataFrame(rows, columns=COLUMNS)


def _encode(values: pd.Series) -> tuple[list, optuna.distributions.BaseDistribution]:
    """(the values as Optuna sees them, their distribution). Numbers that never repeat were drawn
    from a range: they enter by rank, in (0, 1). Anything that repeats (a choice such as batch_size
    or kernel_size, text, booleans) is a category: PED-ANOVA's Parzen estimate of a few repeated
    numbers on its 50-step grid would be a few spikes, and its prior alone would make them look
    important."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values) and values.is_unique:
        ranks = (values.rank() - 0.5) / len(values)
        return ranks.tolist(), FloatDistribution(0.0, 1.0)
    plain = values.tolist()  # Python scalars: Optuna's categories take no numpy types
    return plain, CategoricalDistribution(sorted(set(plain), key=str))
