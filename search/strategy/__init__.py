"""How a search chooses and stops trials: TPE with refusals (searcher) and its Optuna journal
(study), fair ASHA (asha), device-hours as a budget (spend), and the named budgets (budgets)."""
