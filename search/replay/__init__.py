"""Searches that train nothing, to measure search strategies: recording learning curves (record,
`python -m search.replay.record`), reading records (records), the surrogate and its Tune trainable
(surrogate), and a discrete-event simulation of a whole search (simulate)."""
