"""Building blocks of the decoder: norms, rotary embeddings, weight-loading linear layers."""
