"""Builders of the standard workloads, one module per family.

A builder is a plain function named in a manifest as ``"module:function"``::

    def build(params: Mapping[str, Any], rng: np.random.Generator) -> onnx.ModelProto

It receives the manifest's params (with any overrides, already checked by the
catalog) and a generator seeded with the manifest's ``weights_seed``, and
returns an fp32 model whose inputs are exactly those the manifest declares.
``_graph.GraphBuilder`` supplies the naming, initialisation and metadata every
builder must share for the files to be byte-identical across machines.
"""
