"""Pictures of what the discriminators look at: attention maps and per-pixel outputs (visualization.attention_maps)."""
