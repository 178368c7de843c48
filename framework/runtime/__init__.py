"""How lamina runs fast on this kind of machine, apart from what it computes: the training
step on shards of the batch (:mod:`.parallel`), NumPy's BLAS threads (:mod:`.blas`),
glibc's malloc settings (:mod:`.allocator`) and ``lamina bench`` (:mod:`.bench`)."""
