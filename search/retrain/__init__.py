"""`python -m search.retrain runs/NAME [seeds=3 epochs=30 trial=ID config=seed|baseline key=value ...]`

The final step of a search: retrain one configuration on ALL 60,000 training images (no
validation set) with several seeds in parallel, as Ray tasks, and evaluate each seed exactly once
on the 10,000 test images. Which configuration:

  (default)        the search's best: results.load(runs/NAME).best["config"]
  trial=ID         that trial (its row in results.load(runs/NAME).trials)
  config=seed|...  a preset; runs/NAME need not exist yet (it is created)

then any Config key (filters=32,64 dense=128 lr=1e-3 ...) on top. `epochs` sets the run length
(and the schedule's), `seed` the first seed (seeds are seed, seed+1, ...; default 0, 1, 2).

runs/NAME is a local folder or a URI (s3://BUCKET/runs/NAME, file:///...). The retrain holds the
folder's lock (search.runtime.lock) while it runs: it does not start while a search works there
(refused before Ray starts), and a search does not resume while it runs. A seed whose worker or
node dies is run again (MAX_RETRIES).

Writes runs/NAME/winner/ as a whole (built in a temporary folder, then renamed): retrain.parquet
(per seed), retrain_epochs.parquet (per seed per epoch), per_class.parquet and confusion.parquet
(first seed), model.pt and model.onnx (first seed), and PNG figures (learning_curves, confusion,
predictions, misclassified); table names and schemas: results.schema.WINNER_TABLES. Nothing is
published unless ONNX Runtime's test-set predictions agree with PyTorch's. On an object store
winner/ is replaced file by file (object stores cannot rename a folder).

The command's parts: search.retrain.plan (the command line, checked before anything runs),
seeds (the seeds as Ray tasks), winner (winner/'s files), __main__ (the command itself).
"""
