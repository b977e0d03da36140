"""Where bytes live: the lake's key layout and the stores that hold it."""
