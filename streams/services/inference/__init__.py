"""The Open Inference Protocol (V2), free of HTTP: request bodies to tensors (``tensors``),
tensors to feature events (``inputs``), answers (``protocol``), its errors (``errors``) and
its predictions on the ``predictions`` topic (``predictions``).
"""
