"""Where a search runs and writes: an embedded or joined Ray (ray_session), the device a trial
trains on (devices), one process per experiment folder (lock), local paths and URIs (storage)."""
