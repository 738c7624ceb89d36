"""Building blocks shared by the learned methods: MLPs, positional encodings, attention layers, losses."""
